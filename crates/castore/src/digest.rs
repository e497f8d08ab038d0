//! BLAKE3-256 digests, the names of blobs and directories.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use thiserror::Error;

pub const B3_LEN: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct B3Digest([u8; B3_LEN]);

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum DigestError {
    #[error("digest has {0} bytes, expected 32")]
    WrongLength(usize),
    #[error("digest {0:?} is neither 64 hex characters nor blake3-<base64>")]
    BadText(String),
}

impl B3Digest {
    pub fn as_bytes(&self) -> &[u8; B3_LEN] {
        &self.0
    }

    /// BLAKE3 of `data`.
    pub fn of(data: &[u8]) -> Self {
        B3Digest(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

impl From<[u8; B3_LEN]> for B3Digest {
    fn from(b: [u8; B3_LEN]) -> Self {
        B3Digest(b)
    }
}

impl From<blake3::Hash> for B3Digest {
    fn from(h: blake3::Hash) -> Self {
        B3Digest(*h.as_bytes())
    }
}

impl TryFrom<&[u8]> for B3Digest {
    type Error = DigestError;
    fn try_from(b: &[u8]) -> Result<Self, DigestError> {
        Ok(B3Digest(b.try_into().map_err(|_| DigestError::WrongLength(b.len()))?))
    }
}

impl TryFrom<&bytes::Bytes> for B3Digest {
    type Error = DigestError;
    fn try_from(b: &bytes::Bytes) -> Result<Self, DigestError> {
        B3Digest::try_from(&b[..])
    }
}

impl From<B3Digest> for bytes::Bytes {
    fn from(d: B3Digest) -> Self {
        bytes::Bytes::copy_from_slice(&d.0)
    }
}

impl fmt::Display for B3Digest {
    /// `blake3-<base64>`, in the style of SRI hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3-{}", BASE64.encode(&self.0))
    }
}

impl fmt::Debug for B3Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for B3Digest {
    type Err = DigestError;
    /// Accepts `blake3-<base64>` (as printed) or 64 hex characters.
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let bytes = if let Some(b64) = s.strip_prefix("blake3-") {
            BASE64.decode(b64.as_bytes()).map_err(|_| DigestError::BadText(s.into()))?
        } else if s.len() == 2 * B3_LEN {
            HEXLOWER_PERMISSIVE.decode(s.as_bytes()).map_err(|_| DigestError::BadText(s.into()))?
        } else {
            return Err(DigestError::BadText(s.into()));
        };
        B3Digest::try_from(&bytes[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        let d = B3Digest::of(b"");
        // BLAKE3 of the empty input, from the BLAKE3 specification's test vectors
        assert_eq!(d.to_hex(), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
        assert_eq!(d.to_string().parse::<B3Digest>().unwrap(), d);
        assert_eq!(d.to_hex().parse::<B3Digest>().unwrap(), d);
        assert_eq!(B3Digest::try_from(&[0u8; 31][..]), Err(DigestError::WrongLength(31)));
        assert!("blake3-AAAA".parse::<B3Digest>().is_err());
    }
}
