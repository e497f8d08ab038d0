//! Hash algorithms Nix uses and their text forms.
//!
//! Nix accepts a hash as base16, nixbase32 or base64, optionally prefixed by
//! `algo:`, or in SRI form `algo-<base64>`. Which encoding is meant follows from
//! the length, since the lengths never collide for a given algorithm.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use sha2::Digest;
use thiserror::Error;

use crate::nixbase32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashAlgo {
    pub const ALL: [HashAlgo; 4] = [HashAlgo::Md5, HashAlgo::Sha1, HashAlgo::Sha256, HashAlgo::Sha512];

    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha512 => 64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgo {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        HashAlgo::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| HashError::UnknownAlgo(s.to_string()))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HashError {
    #[error("unknown hash algorithm {0:?}")]
    UnknownAlgo(String),
    #[error("hash {0:?} has no algorithm prefix and none is implied")]
    MissingAlgo(String),
    #[error("hash {hash:?} has length {len}, which is no encoding of a {algo} digest")]
    WrongLength { hash: String, algo: HashAlgo, len: usize },
    #[error("hash {0:?} is not validly encoded")]
    BadEncoding(String),
    #[error("hash algorithm {got} where {expected} was expected")]
    AlgoMismatch { expected: HashAlgo, got: HashAlgo },
}

/// A digest together with its algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NixHash {
    algo: HashAlgo,
    digest: Vec<u8>,
}

impl fmt::Debug for NixHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_sri())
    }
}

impl NixHash {
    /// Builds a hash from raw digest bytes; the length must fit the algorithm.
    pub fn from_digest(algo: HashAlgo, digest: &[u8]) -> Result<Self, HashError> {
        if digest.len() != algo.digest_len() {
            return Err(HashError::WrongLength { hash: BASE64.encode(digest), algo, len: digest.len() });
        }
        Ok(NixHash { algo, digest: digest.to_vec() })
    }

    pub fn sha256(digest: [u8; 32]) -> Self {
        NixHash { algo: HashAlgo::Sha256, digest: digest.to_vec() }
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// The digest as a fixed-size sha256 array, if this is a sha256 hash.
    pub fn sha256_digest(&self) -> Option<[u8; 32]> {
        (self.algo == HashAlgo::Sha256).then(|| self.digest.as_slice().try_into().expect("length checked"))
    }

    /// Hash `data` with `algo`.
    pub fn compute(algo: HashAlgo, data: &[u8]) -> Self {
        let mut h = Hasher::new(algo);
        h.update(data);
        h.finish()
    }

    pub fn to_base16(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.digest)
    }
    pub fn to_nix32(&self) -> String {
        nixbase32::encode(&self.digest)
    }
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.digest)
    }
    /// `sha256-<base64>`
    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algo, self.to_base64())
    }
    /// `sha256:<nix32>`, what narinfo files and the CLI print.
    pub fn to_nix32_prefixed(&self) -> String {
        format!("{}:{}", self.algo, self.to_nix32())
    }
    /// `sha256:<base16>`
    pub fn to_base16_prefixed(&self) -> String {
        format!("{}:{}", self.algo, self.to_base16())
    }

    /// Parses any of Nix's text forms. `algo` is the algorithm implied by the
    /// context (required for unprefixed input; checked against a prefix).
    pub fn parse(s: &str, algo: Option<HashAlgo>) -> Result<Self, HashError> {
        let (found, rest, sri) = if let Some((a, rest)) = s.split_once(':') {
            (Some(a.parse::<HashAlgo>()?), rest, false)
        } else if let Some((a, rest)) = s.split_once('-').filter(|(a, _)| a.parse::<HashAlgo>().is_ok()) {
            (Some(a.parse::<HashAlgo>()?), rest, true)
        } else {
            (None, s, false)
        };
        let algo = match (algo, found) {
            (Some(want), Some(got)) if want != got => return Err(HashError::AlgoMismatch { expected: want, got }),
            (_, Some(a)) | (Some(a), None) => a,
            (None, None) => return Err(HashError::MissingAlgo(s.to_string())),
        };
        let n = algo.digest_len();
        let bad = || HashError::BadEncoding(s.to_string());
        let digest = if sri {
            BASE64.decode(rest.as_bytes()).map_err(|_| bad())?
        } else if rest.len() == 2 * n {
            HEXLOWER_PERMISSIVE.decode(rest.as_bytes()).map_err(|_| bad())?
        } else if rest.len() == nixbase32::encoded_len(n) {
            nixbase32::decode(rest.as_bytes()).map_err(|_| bad())?
        } else if rest.len() == n.div_ceil(3) * 4 {
            BASE64.decode(rest.as_bytes()).map_err(|_| bad())?
        } else {
            return Err(HashError::WrongLength { hash: s.to_string(), algo, len: rest.len() });
        };
        if digest.len() != n {
            return Err(HashError::WrongLength { hash: s.to_string(), algo, len: rest.len() });
        }
        Ok(NixHash { algo, digest })
    }
}

/// Streaming hasher over any of the algorithms.
#[derive(Clone)]
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algo: HashAlgo) -> Self {
        match algo {
            HashAlgo::Md5 => Hasher::Md5(md5::Md5::new()),
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> NixHash {
        let (algo, digest) = match self {
            Hasher::Md5(h) => (HashAlgo::Md5, h.finalize().to_vec()),
            Hasher::Sha1(h) => (HashAlgo::Sha1, h.finalize().to_vec()),
            Hasher::Sha256(h) => (HashAlgo::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (HashAlgo::Sha512, h.finalize().to_vec()),
        };
        NixHash { algo, digest }
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// sha256 of `data`, as raw bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY16: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY32: &str = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const EMPTY64: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn all_text_forms_parse_to_the_same_hash() {
        let h = NixHash::compute(HashAlgo::Sha256, b"");
        for s in [
            format!("sha256:{EMPTY16}"),
            format!("sha256:{EMPTY32}"),
            format!("sha256:{EMPTY64}"),
            format!("sha256-{EMPTY64}"),
        ] {
            assert_eq!(NixHash::parse(&s, None).unwrap(), h, "{s}");
            assert_eq!(NixHash::parse(&s, Some(HashAlgo::Sha256)).unwrap(), h, "{s}");
        }
        for s in [EMPTY16, EMPTY32, EMPTY64] {
            assert_eq!(NixHash::parse(s, Some(HashAlgo::Sha256)).unwrap(), h);
            assert!(matches!(NixHash::parse(s, None), Err(HashError::MissingAlgo(_))));
        }
        assert_eq!(h.to_base16(), EMPTY16);
        assert_eq!(h.to_nix32(), EMPTY32);
        assert_eq!(h.to_sri(), format!("sha256-{EMPTY64}"));
        assert_eq!(h.to_nix32_prefixed(), format!("sha256:{EMPTY32}"));
    }

    #[test]
    fn rejects() {
        assert!(matches!(NixHash::parse("sha256:abc", None), Err(HashError::WrongLength { .. })));
        assert!(matches!(NixHash::parse("blake9:abc", None), Err(HashError::UnknownAlgo(_))));
        assert!(matches!(
            NixHash::parse(&format!("sha1:{EMPTY16}"), Some(HashAlgo::Sha256)),
            Err(HashError::AlgoMismatch { .. })
        ));
        // 'e' is not nixbase32
        let bad = format!("sha256:{}e", &EMPTY32[..51]);
        assert!(matches!(NixHash::parse(&bad, None), Err(HashError::BadEncoding(_))));
    }

    #[test]
    fn every_algo_roundtrips_every_form() {
        for algo in HashAlgo::ALL {
            let h = NixHash::compute(algo, b"hello");
            for s in [h.to_base16_prefixed(), h.to_nix32_prefixed(), h.to_sri(), format!("{algo}:{}", h.to_base64())] {
                assert_eq!(NixHash::parse(&s, None).unwrap(), h, "{s}");
            }
        }
    }
}
