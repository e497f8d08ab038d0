//! Content addresses: `text:sha256:<nix32>`, `fixed:<algo>:<nix32>` (flat),
//! `fixed:r:<algo>:<nix32>` (NAR).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::hash::{HashAlgo, HashError, NixHash};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ContentAddress {
    /// A text file hashed flat with sha256 (`builtins.toFile`, derivations).
    Text(NixHash),
    /// A single file hashed flat.
    Flat(NixHash),
    /// A tree hashed as its NAR serialisation (`fixed:r:`).
    Nar(NixHash),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContentAddressError {
    #[error("content address {0:?} has an unknown method")]
    UnknownMethod(String),
    #[error("content address {0:?}: text must be sha256")]
    TextNotSha256(String),
    #[error("content address {ca:?}: {source}")]
    Hash { ca: String, source: HashError },
}

impl ContentAddress {
    pub fn hash(&self) -> &NixHash {
        match self {
            ContentAddress::Text(h) | ContentAddress::Flat(h) | ContentAddress::Nar(h) => h,
        }
    }

    /// The method prefix as used in AddToStore's method string and the
    /// `ca` field: `text:`, `fixed:`, `fixed:r:`.
    pub fn method_prefix(&self) -> &'static str {
        match self {
            ContentAddress::Text(_) => "text:",
            ContentAddress::Flat(_) => "fixed:",
            ContentAddress::Nar(_) => "fixed:r:",
        }
    }

    /// The JSON method name (`text`, `flat`, `nar`) of newer Nix's path-info JSON.
    pub fn method_name(&self) -> &'static str {
        match self {
            ContentAddress::Text(_) => "text",
            ContentAddress::Flat(_) => "flat",
            ContentAddress::Nar(_) => "nar",
        }
    }
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.method_prefix(), self.hash().to_nix32_prefixed())
    }
}

impl FromStr for ContentAddress {
    type Err = ContentAddressError;
    fn from_str(s: &str) -> Result<Self, ContentAddressError> {
        let hash = |rest: &str| {
            NixHash::parse(rest, None).map_err(|source| ContentAddressError::Hash { ca: s.to_string(), source })
        };
        if let Some(rest) = s.strip_prefix("text:") {
            let h = hash(rest)?;
            if h.algo() != HashAlgo::Sha256 {
                return Err(ContentAddressError::TextNotSha256(s.to_string()));
            }
            Ok(ContentAddress::Text(h))
        } else if let Some(rest) = s.strip_prefix("fixed:r:") {
            Ok(ContentAddress::Nar(hash(rest)?))
        } else if let Some(rest) = s.strip_prefix("fixed:") {
            Ok(ContentAddress::Flat(hash(rest)?))
        } else {
            Err(ContentAddressError::UnknownMethod(s.to_string()))
        }
    }
}

serde_via_text!(ContentAddress);

#[cfg(test)]
mod tests {
    use super::*;

    /// The three content addresses of Nix's `common-protocol/content-address`
    /// vector: JSON (SRI) form on one side, the wire string on the other.
    #[test]
    fn nix_vector_strings() {
        let cases = [
            (
                "text:sha256:1vb2xd67750jrvqgykxrf5ipl3h1q57sxc57q5nzjw56bqp3sxzr",
                "sha256-+Xc9Ll6mcPltwaewrk/BAQ56Y3G5T//wzhKUc0zrYu0=",
                "text",
            ),
            ("fixed:sha1:1amk6n7wxjlw4qkq6dcj6mm7hw3acrw0", "sha1-gGemBoenViNZM3hiwqns/Fgzqwo=", "flat"),
            (
                "fixed:r:sha256:1lr187v6dck1rjh2j6svpikcfz53wyl3qrlcbb405zlh13x0khhh",
                "sha256-EMIJ+giQ/gLIWoxmPKjno3zHZrxbGymgzGGyZvZBIdM=",
                "nar",
            ),
        ];
        for (wire, sri, method) in cases {
            let ca: ContentAddress = wire.parse().unwrap();
            assert_eq!(ca.to_string(), wire);
            assert_eq!(ca.hash().to_sri(), sri);
            assert_eq!(ca.method_name(), method);
        }
        assert!(matches!("fixed:git:sha1:abc".parse::<ContentAddress>(), Err(ContentAddressError::Hash { .. })));
        assert!(matches!("nope:sha256:x".parse::<ContentAddress>(), Err(ContentAddressError::UnknownMethod(_))));
    }
}
