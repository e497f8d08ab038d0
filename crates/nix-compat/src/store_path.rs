//! Store paths: `/nix/store/<32 nixbase32 chars>-<name>`, and how Nix computes them.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::content_address::ContentAddress;
use crate::hash::{sha256, HashAlgo};
use crate::nixbase32;

pub const STORE_DIR: &str = "/nix/store";
/// `STORE_DIR` with the trailing slash, the prefix of every absolute store path.
pub const STORE_DIR_SLASH: &str = "/nix/store/";
pub const DIGEST_LEN: usize = 20;
/// Length of the nixbase32 digest part of a basename.
pub const ENCODED_DIGEST_LEN: usize = 32;
pub const MAX_NAME_LEN: usize = 211;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StorePathError {
    #[error("{0:?} is not in the store directory {STORE_DIR}")]
    NotInStore(String),
    #[error("store path basename {0:?} is too short")]
    TooShort(String),
    #[error("store path {0:?} has an invalid digest part")]
    BadDigest(String),
    #[error("store path {0:?} lacks the '-' after its digest")]
    MissingDash(String),
    #[error("store path name {0:?} is empty")]
    EmptyName(String),
    #[error("store path name {name:?} is {len} bytes, more than {MAX_NAME_LEN}")]
    NameTooLong { name: String, len: usize },
    #[error("store path name {0:?} must not start with '.'")]
    LeadingDot(String),
    #[error("store path name {name:?} contains the forbidden byte {byte:#04x}")]
    BadNameChar { name: String, byte: u8 },
    #[error("{0:?} is a path inside a store path, not a store path")]
    HasSubpath(String),
}

/// A store path, held as its 20-byte digest and its name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    digest: [u8; DIGEST_LEN],
    name: String,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks a store path name by Nix's rules.
pub fn validate_name(name: &[u8]) -> Result<&str, StorePathError> {
    if name.is_empty() {
        return Err(StorePathError::EmptyName(String::new()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StorePathError::NameTooLong { name: lossy(name), len: name.len() });
    }
    if name[0] == b'.' {
        return Err(StorePathError::LeadingDot(lossy(name)));
    }
    if let Some(&byte) = name.iter().find(|&&c| !(c.is_ascii_alphanumeric() || b"+-._?=".contains(&c))) {
        return Err(StorePathError::BadNameChar { name: lossy(name), byte });
    }
    Ok(std::str::from_utf8(name).expect("checked ASCII"))
}

impl StorePath {
    pub fn from_parts(digest: [u8; DIGEST_LEN], name: &str) -> Result<Self, StorePathError> {
        validate_name(name.as_bytes())?;
        Ok(StorePath { digest, name: name.to_string() })
    }

    /// Parses `<nixbase32 digest>-<name>`.
    pub fn from_basename(basename: &[u8]) -> Result<Self, StorePathError> {
        if basename.len() < ENCODED_DIGEST_LEN + 2 {
            if basename.len() == ENCODED_DIGEST_LEN + 1 && basename[ENCODED_DIGEST_LEN] == b'-' {
                return Err(StorePathError::EmptyName(lossy(basename)));
            }
            return Err(StorePathError::TooShort(lossy(basename)));
        }
        let digest = nixbase32::decode_fixed::<DIGEST_LEN>(&basename[..ENCODED_DIGEST_LEN])
            .map_err(|_| StorePathError::BadDigest(lossy(basename)))?;
        if basename[ENCODED_DIGEST_LEN] != b'-' {
            return Err(StorePathError::MissingDash(lossy(basename)));
        }
        let name = validate_name(&basename[ENCODED_DIGEST_LEN + 1..])?;
        Ok(StorePath { digest, name: name.to_string() })
    }

    /// Parses `/nix/store/<basename>` (no trailing components; one trailing
    /// slash is tolerated as Nix does for directories given on the command line).
    pub fn from_absolute_path(path: &[u8]) -> Result<Self, StorePathError> {
        let rest =
            path.strip_prefix(STORE_DIR_SLASH.as_bytes()).ok_or_else(|| StorePathError::NotInStore(lossy(path)))?;
        let rest = rest.strip_suffix(b"/").unwrap_or(rest);
        if rest.contains(&b'/') {
            return Err(StorePathError::HasSubpath(lossy(path)));
        }
        Self::from_basename(rest)
    }

    /// Splits `/nix/store/<basename>/sub/path` into the store path and the
    /// remaining relative path (empty if none).
    pub fn from_absolute_path_full(path: &[u8]) -> Result<(Self, &[u8]), StorePathError> {
        let rest =
            path.strip_prefix(STORE_DIR_SLASH.as_bytes()).ok_or_else(|| StorePathError::NotInStore(lossy(path)))?;
        let (base, sub) = match rest.iter().position(|&c| c == b'/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        Ok((Self::from_basename(base)?, sub))
    }

    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-character nixbase32 digest part.
    pub fn hash_part(&self) -> String {
        nixbase32::encode(&self.digest)
    }

    /// `<digest>-<name>`
    pub fn basename(&self) -> String {
        format!("{}-{}", self.hash_part(), self.name)
    }

    /// `/nix/store/<digest>-<name>`
    pub fn to_absolute_path(&self) -> String {
        format!("{STORE_DIR_SLASH}{}", self.basename())
    }

    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }
}

impl fmt::Display for StorePath {
    /// Displays the absolute path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR_SLASH}{}-{}", self.hash_part(), self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.basename())
    }
}

impl FromStr for StorePath {
    type Err = StorePathError;
    /// Accepts an absolute store path or a basename.
    fn from_str(s: &str) -> Result<Self, StorePathError> {
        if s.starts_with('/') {
            Self::from_absolute_path(s.as_bytes())
        } else {
            Self::from_basename(s.as_bytes())
        }
    }
}

serde_via_text!(StorePath);

/// sha256 of the fingerprint, XOR-folded to 20 bytes.
pub fn compress_hash<const N: usize>(input: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in input.iter().enumerate() {
        out[i % N] ^= b;
    }
    out
}

/// Nix's `makeStorePath`: `"<type>:sha256:<base16 inner>:/nix/store:<name>"`.
pub fn build_store_path(path_type: &str, inner_sha256: &[u8; 32], name: &str) -> Result<StorePath, StorePathError> {
    validate_name(name.as_bytes())?;
    let fingerprint = format!("{path_type}:sha256:{}:{STORE_DIR}:{name}", data_encoding::HEXLOWER.encode(inner_sha256));
    let digest = compress_hash::<DIGEST_LEN>(&sha256(fingerprint.as_bytes()));
    Ok(StorePath { digest, name: name.to_string() })
}

fn type_with_references<'a>(
    prefix: &str,
    references: impl IntoIterator<Item = &'a StorePath>,
    self_reference: bool,
) -> String {
    let mut refs: Vec<String> = references.into_iter().map(|p| p.to_absolute_path()).collect();
    refs.sort();
    let mut t = prefix.to_string();
    for r in refs {
        t.push(':');
        t.push_str(&r);
    }
    if self_reference {
        t.push_str(":self");
    }
    t
}

/// The path of a text file (`builtins.toFile`, `.drv` files).
pub fn make_text_path<'a>(
    name: &str,
    content_sha256: &[u8; 32],
    references: impl IntoIterator<Item = &'a StorePath>,
) -> Result<StorePath, StorePathError> {
    build_store_path(&type_with_references("text", references, false), content_sha256, name)
}

/// The path `nix-store --add` gives a tree whose NAR has sha256 `nar_sha256`.
pub fn make_source_path<'a>(
    name: &str,
    nar_sha256: &[u8; 32],
    references: impl IntoIterator<Item = &'a StorePath>,
    self_reference: bool,
) -> Result<StorePath, StorePathError> {
    build_store_path(&type_with_references("source", references, self_reference), nar_sha256, name)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MakePathError {
    #[error(transparent)]
    StorePath(#[from] StorePathError),
    #[error("a {0} content address cannot have references")]
    ReferencesNotAllowed(&'static str),
    #[error("a text content address must use sha256")]
    TextNotSha256,
}

/// The store path of content-addressed data (Nix's `makeFixedOutputPathFromCA`).
pub fn make_ca_path<'a>(
    name: &str,
    ca: &ContentAddress,
    references: impl IntoIterator<Item = &'a StorePath>,
    self_reference: bool,
) -> Result<StorePath, MakePathError> {
    let mut references = references.into_iter().peekable();
    match ca {
        ContentAddress::Text(h) => {
            if self_reference {
                return Err(MakePathError::ReferencesNotAllowed("self-referencing text"));
            }
            let d = h.sha256_digest().ok_or(MakePathError::TextNotSha256)?;
            Ok(make_text_path(name, &d, references)?)
        }
        ContentAddress::Nar(h) if h.algo() == HashAlgo::Sha256 => {
            let d = h.sha256_digest().expect("sha256 checked");
            Ok(make_source_path(name, &d, references, self_reference)?)
        }
        ContentAddress::Nar(h) | ContentAddress::Flat(h) => {
            if references.peek().is_some() || self_reference {
                return Err(MakePathError::ReferencesNotAllowed("fixed-output"));
            }
            let rec = if matches!(ca, ContentAddress::Nar(_)) { "r:" } else { "" };
            let inner = format!("fixed:out:{rec}{}:{}:", h.algo(), h.to_base16());
            Ok(build_store_path("output:out", &sha256(inner.as_bytes()), name)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let p: StorePath = "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo-bar".parse().unwrap();
        assert_eq!(p.name(), "foo-bar");
        assert_eq!(p.hash_part(), "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q");
        assert_eq!(p.to_string(), "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo-bar");
        let q = StorePath::from_basename(b"g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo-bar").unwrap();
        assert_eq!(p, q);
        let (r, sub) =
            StorePath::from_absolute_path_full(b"/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo-bar/bin/x").unwrap();
        assert_eq!((r, sub), (p, &b"bin/x"[..]));
    }

    #[test]
    fn rejects() {
        use StorePathError::*;
        let d = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q";
        type Case = (String, fn(&StorePathError) -> bool);
        let cases: Vec<Case> = vec![
            (format!("/nix/stor/{d}-x"), |e| matches!(e, NotInStore(_))),
            (format!("/nix/store/{d}-"), |e| matches!(e, EmptyName(_))),
            (format!("/nix/store/{d}"), |e| matches!(e, TooShort(_))),
            (format!("/nix/store/{d}_x"), |e| matches!(e, MissingDash(_))),
            ("/nix/store/e1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-x".into(), |e| matches!(e, BadDigest(_))),
            (format!("/nix/store/{d}-.x"), |e| matches!(e, LeadingDot(_))),
            (format!("/nix/store/{d}-a b"), |e| matches!(e, BadNameChar { byte: b' ', .. })),
            (format!("/nix/store/{d}-{}", "a".repeat(212)), |e| matches!(e, NameTooLong { .. })),
            (format!("/nix/store/{d}-x/y"), |e| matches!(e, HasSubpath(_))),
        ];
        for (s, pred) in cases {
            let e = StorePath::from_absolute_path(s.as_bytes()).unwrap_err();
            assert!(pred(&e), "{s}: {e}");
        }
        assert!(StorePath::from_absolute_path(format!("/nix/store/{d}-{}", "a".repeat(211)).as_bytes()).is_ok());
    }
}
