//! Derivations in their store form, the ATerm text of a `.drv` file:
//! `Derive([outputs],[input derivations],[input sources],"system","builder",[args],[env])`.
//! Parsed strictly and printed back byte for byte; tested on `.drv` files
//! Nix 2.8 wrote (`tests/vectors/derivation/`).

use std::fmt::Write as _;

use thiserror::Error;

use crate::store_path::{StorePath, StorePathError};

/// One output: its path (empty for outputs whose path is not known until
/// they are built: content-addressed floating or deferred ones) and, for
/// fixed-output derivations, the hash algorithm (`r:sha256`, `sha256`, …)
/// and the expected hash in base16.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    pub path: Option<StorePath>,
    pub hash_algo: String,
    pub hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derivation {
    pub outputs: Vec<Output>,
    /// Input derivations and the names of the outputs used from each.
    pub input_derivations: Vec<(StorePath, Vec<String>)>,
    pub input_sources: Vec<StorePath>,
    pub system: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DerivationError {
    #[error("derivation: expected {expected} at byte {offset}")]
    Syntax { expected: &'static str, offset: usize },
    #[error("derivation: invalid escape at byte {0}")]
    Escape(usize),
    #[error("derivation: not UTF-8 at byte {0}")]
    Utf8(usize),
    #[error("derivation: {0}")]
    Path(#[from] StorePathError),
    #[error("derivation: {0} bytes after its end")]
    Trailing(usize),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn expect(&mut self, token: &'static str) -> Result<(), DerivationError> {
        if self.s[self.pos..].starts_with(token.as_bytes()) {
            self.pos += token.len();
            Ok(())
        } else {
            Err(DerivationError::Syntax { expected: token, offset: self.pos })
        }
    }

    fn peek(&self, c: u8) -> bool {
        self.s.get(self.pos) == Some(&c)
    }

    fn string(&mut self) -> Result<String, DerivationError> {
        self.expect("\"")?;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos) {
                None => return Err(DerivationError::Syntax { expected: "a closing '\"'", offset: self.pos }),
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = match self.s.get(self.pos + 1) {
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'\\') => b'\\',
                        Some(b'"') => b'"',
                        _ => return Err(DerivationError::Escape(self.pos)),
                    };
                    out.push(c);
                    self.pos += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        let start = self.pos;
        self.pos += 1;
        String::from_utf8(out).map_err(|_| DerivationError::Utf8(start))
    }

    fn path(&mut self) -> Result<StorePath, DerivationError> {
        Ok(self.string()?.parse::<StorePath>()?)
    }

    /// `[item,item,…]`
    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, DerivationError>,
    ) -> Result<Vec<T>, DerivationError> {
        self.expect("[")?;
        let mut out = Vec::new();
        if self.peek(b']') {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if self.peek(b',') {
                self.pos += 1;
            } else {
                self.expect("]")?;
                return Ok(out);
            }
        }
    }
}

impl Derivation {
    /// Parses the contents of a `.drv` file.
    pub fn parse(aterm: &[u8]) -> Result<Derivation, DerivationError> {
        let mut p = Parser { s: aterm, pos: 0 };
        p.expect("Derive(")?;
        let outputs = p.list(|p| {
            p.expect("(")?;
            let name = p.string()?;
            p.expect(",")?;
            let path = p.string()?;
            let path = if path.is_empty() { None } else { Some(path.parse::<StorePath>()?) };
            p.expect(",")?;
            let hash_algo = p.string()?;
            p.expect(",")?;
            let hash = p.string()?;
            p.expect(")")?;
            Ok(Output { name, path, hash_algo, hash })
        })?;
        p.expect(",")?;
        let input_derivations = p.list(|p| {
            p.expect("(")?;
            let drv = p.path()?;
            p.expect(",")?;
            let outs = p.list(Parser::string)?;
            p.expect(")")?;
            Ok((drv, outs))
        })?;
        p.expect(",")?;
        let input_sources = p.list(Parser::path)?;
        p.expect(",")?;
        let system = p.string()?;
        p.expect(",")?;
        let builder = p.string()?;
        p.expect(",")?;
        let args = p.list(Parser::string)?;
        p.expect(",")?;
        let env = p.list(|p| {
            p.expect("(")?;
            let k = p.string()?;
            p.expect(",")?;
            let v = p.string()?;
            p.expect(")")?;
            Ok((k, v))
        })?;
        p.expect(")")?;
        if p.pos != aterm.len() {
            return Err(DerivationError::Trailing(aterm.len() - p.pos));
        }
        Ok(Derivation { outputs, input_derivations, input_sources, system, builder, args, env })
    }

    /// The ATerm text, as Nix writes it.
    pub fn to_aterm(&self) -> String {
        let mut s = String::from("Derive(");
        list(&mut s, &self.outputs, |s, o| {
            s.push('(');
            string(s, &o.name);
            s.push(',');
            string(s, &o.path.as_ref().map(|p| p.to_string()).unwrap_or_default());
            s.push(',');
            string(s, &o.hash_algo);
            s.push(',');
            string(s, &o.hash);
            s.push(')');
        });
        s.push(',');
        list(&mut s, &self.input_derivations, |s, (drv, outs)| {
            s.push('(');
            string(s, &drv.to_string());
            s.push(',');
            list(s, outs, |s, o| string(s, o));
            s.push(')');
        });
        s.push(',');
        list(&mut s, &self.input_sources, |s, p| string(s, &p.to_string()));
        s.push(',');
        string(&mut s, &self.system);
        s.push(',');
        string(&mut s, &self.builder);
        s.push(',');
        list(&mut s, &self.args, |s, a| string(s, a));
        s.push(',');
        list(&mut s, &self.env, |s, (k, v)| {
            s.push('(');
            string(s, k);
            s.push(',');
            string(s, v);
            s.push(')');
        });
        s.push(')');
        s
    }
}

fn list<T>(s: &mut String, items: &[T], mut item: impl FnMut(&mut String, &T)) {
    s.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        item(s, x);
    }
    s.push(']');
}

fn string(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => {
                let _ = s.write_char(c);
            }
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/derivation");
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "drv"))
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        assert_eq!(v.len(), 5, "{}", dir.display());
        v
    }

    fn vector(suffix: &str) -> Derivation {
        let (_, bytes) = vectors().into_iter().find(|(n, _)| n.ends_with(suffix)).unwrap();
        Derivation::parse(&bytes).unwrap()
    }

    #[test]
    fn what_nix_wrote_parses_and_prints_back_byte_for_byte() {
        for (name, bytes) in vectors() {
            let d = Derivation::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(d.to_aterm().as_bytes(), &bytes[..], "{name}");
        }
    }

    #[test]
    fn fields_are_what_nix_recorded() {
        let dep = vector("-dep.drv");
        let names: Vec<&str> = dep.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["dev", "lib", "out"], "sorted by name, as Nix writes them");
        // `nix-store -q --outputs` of this derivation, as Nix 2.8 printed them
        let paths: Vec<String> = dep.outputs.iter().map(|o| o.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/nix/store/x6d9mxmc1l27y5wy45g1x788y93ycw8d-dep-dev",
                "/nix/store/qjrxzv86k6ai0b22x58xfc8mznr35qdr-dep-lib",
                "/nix/store/x3cbgi3ga9n48iv9k47ppsc4ca041y49-dep"
            ]
        );
        let uses = vector("-uses.drv");
        assert_eq!(uses.input_derivations.len(), 1);
        assert_eq!(uses.input_derivations[0].1, ["dev", "out"]);
        let text = &uses.env.iter().find(|(k, _)| k == "text").unwrap().1;
        assert_eq!(text, "quotes \" backslash \\ newline\n tab\t cr\r dollar $ done");
        let fixed = vector("-fixed-r.drv");
        assert_eq!(fixed.outputs[0].hash_algo, "r:sha256");
        assert_eq!(fixed.outputs[0].hash.len(), 64);
        assert_eq!(vector("-fixed.drv").outputs[0].hash_algo, "sha256");
        assert!(vector("-attrs.drv").env.iter().any(|(k, v)| k == "__json" && v.contains("\"three\":3")));
    }

    #[test]
    fn bad_input_is_refused_with_where() {
        let (_, good) = vectors().into_iter().next().unwrap();
        for cut in [0, 7, 30, good.len() - 1] {
            assert!(Derivation::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(b'\n');
        assert_eq!(Derivation::parse(&trailing), Err(DerivationError::Trailing(1)));
        assert!(matches!(Derivation::parse(b"Derive([(\"out\",\"\\q\",\"\",\"\")]"), Err(DerivationError::Escape(_))));
        assert!(matches!(
            Derivation::parse(b"Derive([(\"out\",\"/tmp/x\",\"\",\"\")],[],[],\"s\",\"b\",[],[])"),
            Err(DerivationError::Path(_))
        ));
        let no_path = Derivation::parse(b"Derive([(\"out\",\"\",\"r:sha256\",\"\")],[],[],\"s\",\"b\",[],[])").unwrap();
        assert_eq!(no_path.outputs[0].path, None);
    }
}
