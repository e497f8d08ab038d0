//! `nix path-info --json`: what Nix prints about store paths, in both of
//! its shapes. Nix up to 2.18 prints a list of objects, each with its
//! `path`, leaving out empty fields (an invalid path is
//! `{"path": …, "valid": false}`); Nix 2.19 and later print an object keyed
//! by path, every field present (`null` when unknown; an invalid path maps
//! to `null`). Both parse; each prints back byte for byte as Nix printed it.
//!
//! Nix 2.33's format version 2 (structured content addresses) is refused
//! with a clear error rather than misread.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::content_address::ContentAddress;
use crate::hash::NixHash;
use crate::signing::Signature;
use crate::store_path::StorePath;

/// What Nix prints about one valid store path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathInfoJson {
    #[serde(with = "sri")]
    pub nar_hash: NixHash,
    pub nar_size: u64,
    pub references: Vec<StorePath>,
    #[serde(default)]
    pub ca: Option<ContentAddress>,
    /// Only with `--closure-size`.
    #[serde(default)]
    pub closure_size: Option<u64>,
    #[serde(default)]
    pub deriver: Option<StorePath>,
    #[serde(default)]
    pub registration_time: Option<u64>,
    #[serde(default)]
    pub ultimate: bool,
    #[serde(default)]
    pub signatures: Vec<Signature>,
}

/// The two shapes of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Nix ≤ 2.18: `[{"path": …, …}, …]`.
    List,
    /// Nix ≥ 2.19: `{"/nix/store/…": {…} | null, …}`.
    Map,
}

/// Store paths in the order Nix printed them, each with its info, or `None`
/// for a path that is not valid.
pub type PathInfos = Vec<(StorePath, Option<PathInfoJson>)>;

#[derive(Debug, Error)]
pub enum PathInfoJsonError {
    #[error("path-info JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("path-info JSON: {0}")]
    Path(#[from] crate::store_path::StorePathError),
    #[error("path-info JSON: expected a list or an object, got {0}")]
    Shape(&'static str),
    #[error("path-info JSON: {path}: format version {version} is not supported (versions 1 and earlier are)")]
    Version { path: String, version: serde_json::Value },
}

/// Parses either shape; says which it was.
pub fn parse(json: &[u8]) -> Result<(Form, PathInfos), PathInfoJsonError> {
    use serde_json::Value;
    let infos = |path: StorePath, v: Value| -> Result<(StorePath, Option<PathInfoJson>), PathInfoJsonError> {
        if let Some(version) = v.get("version").filter(|v| v.as_u64() != Some(1)) {
            return Err(PathInfoJsonError::Version { path: path.to_string(), version: version.clone() });
        }
        Ok((path, Some(serde_json::from_value(v)?)))
    };
    match serde_json::from_slice::<Value>(json)? {
        Value::Array(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for mut e in entries {
                let path: StorePath = serde_json::from_value(e.get_mut("path").map(Value::take).unwrap_or_default())?;
                if e.get("valid") == Some(&Value::Bool(false)) {
                    out.push((path, None));
                } else {
                    out.push(infos(path, e)?);
                }
            }
            Ok((Form::List, out))
        }
        Value::Object(map) => {
            let mut out = Vec::with_capacity(map.len());
            for (k, v) in map {
                let path: StorePath = k.parse()?;
                out.push(if v.is_null() { (path, None) } else { infos(path, v)? });
            }
            Ok((Form::Map, out))
        }
        Value::Null => Err(PathInfoJsonError::Shape("null")),
        Value::Bool(_) => Err(PathInfoJsonError::Shape("a boolean")),
        Value::Number(_) => Err(PathInfoJsonError::Shape("a number")),
        Value::String(_) => Err(PathInfoJsonError::Shape("a string")),
    }
}

/// Prints `infos` as Nix does in `form` (compact, no trailing newline).
pub fn print(form: Form, infos: &[(StorePath, Option<PathInfoJson>)]) -> String {
    let out = match form {
        Form::List => serde_json::to_string(&infos.iter().map(|(p, i)| ListEntry(p, i.as_ref())).collect::<Vec<_>>()),
        Form::Map => serde_json::to_string(&MapOut(infos)),
    };
    out.expect("path infos always serialise")
}

/// A list-form entry: fields in Nix's order, empty ones left out.
struct ListEntry<'a>(&'a StorePath, Option<&'a PathInfoJson>);

impl Serialize for ListEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("path", self.0)?;
        let Some(i) = self.1 else {
            m.serialize_entry("valid", &false)?;
            return m.end();
        };
        m.serialize_entry("narHash", &i.nar_hash.to_sri())?;
        m.serialize_entry("narSize", &i.nar_size)?;
        m.serialize_entry("references", &i.references)?;
        if let Some(ca) = &i.ca {
            m.serialize_entry("ca", ca)?;
        }
        if let Some(n) = i.closure_size {
            m.serialize_entry("closureSize", &n)?;
        }
        if let Some(d) = &i.deriver {
            m.serialize_entry("deriver", d)?;
        }
        if let Some(t) = i.registration_time {
            m.serialize_entry("registrationTime", &t)?;
        }
        if i.ultimate {
            m.serialize_entry("ultimate", &true)?;
        }
        if !i.signatures.is_empty() {
            m.serialize_entry("signatures", &i.signatures)?;
        }
        m.end()
    }
}

/// The map form: paths in the order given (Nix prints them sorted).
struct MapOut<'a>(&'a [(StorePath, Option<PathInfoJson>)]);

impl Serialize for MapOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(p, i)| (p, i.as_ref().map(MapFields))))
    }
}

/// A map-form value: every field, keys sorted as Nix's JSON library does.
struct MapFields<'a>(&'a PathInfoJson);

impl Serialize for MapFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let i = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("ca", &i.ca)?;
        if let Some(n) = i.closure_size {
            m.serialize_entry("closureSize", &n)?;
        }
        m.serialize_entry("deriver", &i.deriver)?;
        m.serialize_entry("narHash", &i.nar_hash.to_sri())?;
        m.serialize_entry("narSize", &i.nar_size)?;
        m.serialize_entry("references", &i.references)?;
        m.serialize_entry("registrationTime", &i.registration_time)?;
        m.serialize_entry("signatures", &i.signatures)?;
        m.serialize_entry("ultimate", &i.ultimate)?;
        m.end()
    }
}

/// A NAR hash as Nix prints it here (SRI); any of its text forms on input.
mod sri {
    use crate::hash::NixHash;

    pub fn serialize<S: serde::Serializer>(h: &NixHash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.to_sri())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NixHash, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        NixHash::parse(&s, None).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/path-info").join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim_end().to_string()
    }

    #[test]
    fn what_nix_printed_parses_and_prints_back_byte_for_byte() {
        for (name, form) in [
            ("nix-2.8-list.json", Form::List),
            ("nix-2.8-list-closure-size-invalid.json", Form::List),
            ("nix-2.26-map.json", Form::Map),
            ("nix-2.26-map-closure-size-invalid.json", Form::Map),
        ] {
            let json = vector(name);
            let (found, infos) = parse(json.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(found, form, "{name}");
            assert_eq!(print(form, &infos), json, "{name}");
        }
    }

    #[test]
    fn both_forms_carry_the_same_facts() {
        let (_, list) = parse(vector("nix-2.8-list.json").as_bytes()).unwrap();
        let (_, map) = parse(vector("nix-2.26-map.json").as_bytes()).unwrap();
        let strip = |infos: PathInfos| {
            let mut v: Vec<_> = infos
                .into_iter()
                .map(|(p, i)| {
                    // registration times differ: two stores, two moments
                    (p, i.map(|i| PathInfoJson { registration_time: None, ..i }))
                })
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let (list, map) = (strip(list), strip(map));
        assert_eq!(list, map);
        let top = list.iter().find_map(|(p, i)| (p.name() == "pij-top").then_some(i.as_ref().unwrap())).unwrap();
        assert!(top.ultimate);
        assert_eq!(top.signatures.len(), 1);
        assert_eq!(top.signatures[0].name, "test-key-1");
        assert_eq!(top.references.len(), 1);
        assert!(top.deriver.as_ref().unwrap().is_derivation());
        assert!(top.ca.is_none());
        let flat =
            list.iter().filter_map(|(_, i)| i.as_ref()).filter(|i| matches!(i.ca, Some(ContentAddress::Flat(_))));
        assert_eq!(flat.count(), 1);
    }

    #[test]
    fn invalid_paths_are_kept_as_none_in_both_forms() {
        for name in ["nix-2.8-list-closure-size-invalid.json", "nix-2.26-map-closure-size-invalid.json"] {
            let (_, infos) = parse(vector(name).as_bytes()).unwrap();
            let missing: Vec<_> =
                infos.iter().filter(|(_, i)| i.is_none()).map(|(p, _)| p.name().to_string()).collect();
            assert_eq!(missing, ["missing"], "{name}");
            assert!(infos.iter().any(|(_, i)| i.as_ref().is_some_and(|i| i.closure_size == Some(816))), "{name}");
        }
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        let e = |s: &str| parse(s.as_bytes()).unwrap_err().to_string();
        assert!(e("42").contains("expected a list or an object"), "{}", e("42"));
        assert!(
            e("[{\"path\": \"/tmp/x\", \"narHash\": \"sha256-\"}]").contains("not in the store"),
            "{}",
            e("[{\"path\": \"/tmp/x\"}]")
        );
        let hello = "/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt";
        let v2 = format!("{{\"{hello}\": {{\"version\": 2, \"narHash\": \"x\"}}}}");
        assert!(e(&v2).contains("format version 2 is not supported"), "{}", e(&v2));
        let no_hash = format!("[{{\"path\": \"{hello}\", \"narSize\": 1, \"references\": []}}]");
        assert!(e(&no_hash).contains("narHash"), "{}", e(&no_hash));
        let bad_sig = format!("[{{\"path\": \"{hello}\", \"narHash\": \"sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=\", \"narSize\": 1, \"references\": [], \"signatures\": [\"nokey\"]}}]");
        assert!(e(&bad_sig).contains("signature"), "{}", e(&bad_sig));
    }
}
