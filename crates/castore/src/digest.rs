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

/// BLAKE3's tree over fixed-size segments: a blob's digest is the root of a
/// binary tree whose leaves are 1 KiB chunks, so the chaining value of each
/// aligned [`SEGMENT`]-byte piece is a subtree of it. Kept next to the data,
/// these values let a reader check one segment against the blob's digest
/// without reading the rest (the idea of Bao, at a coarser grain).
pub mod segments {
    use blake3::hazmat::{
        left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
    };

    use super::B3Digest;

    /// Bytes per segment: a power of two number of BLAKE3 chunks.
    pub const SEGMENT: usize = 64 * 1024;

    /// How many segments `len` bytes make (at least one).
    pub fn count(len: u64) -> usize {
        (len.div_ceil(SEGMENT as u64) as usize).max(1)
    }

    /// The chaining value of segment `index` of a blob longer than one
    /// segment; `data` is that segment (the last may be short).
    pub fn chaining_value(index: usize, data: &[u8]) -> ChainingValue {
        let mut h = blake3::Hasher::new();
        h.set_input_offset((index * SEGMENT) as u64);
        h.update(data);
        h.finalize_non_root()
    }

    /// The chaining values of every segment of `data` (longer than one segment).
    pub fn chaining_values(data: &[u8]) -> Vec<ChainingValue> {
        data.chunks(SEGMENT).enumerate().map(|(i, s)| chaining_value(i, s)).collect()
    }

    /// The digest of a blob of `len` bytes (more than one segment) whose
    /// segments have the chaining values `cvs`; `None` if their number does
    /// not fit `len`.
    pub fn root(cvs: &[ChainingValue], len: u64) -> Option<B3Digest> {
        if len <= SEGMENT as u64 || cvs.len() != count(len) {
            return None;
        }
        let left = left_subtree_len(len);
        let split = (left / SEGMENT as u64) as usize;
        let (l, r) = (subtree(&cvs[..split], left), subtree(&cvs[split..], len - left));
        Some(B3Digest(*merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()))
    }

    /// The chaining value of a subtree of `len` bytes made of whole
    /// segments (but its last); its split points fall on segment bounds,
    /// since BLAKE3 splits at the largest power of two chunks below `len`.
    fn subtree(cvs: &[ChainingValue], len: u64) -> ChainingValue {
        if len <= SEGMENT as u64 {
            return cvs[0];
        }
        let left = left_subtree_len(len);
        let split = (left / SEGMENT as u64) as usize;
        merge_subtrees_non_root(&subtree(&cvs[..split], left), &subtree(&cvs[split..], len - left), Mode::Hash)
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

    #[test]
    fn segment_tree_gives_blake3s_digest() {
        use segments::{chaining_value, chaining_values, root, SEGMENT};
        // BLAKE3's test-vector input pattern, at lengths around the segment
        // and power-of-two bounds of its tree
        let data: Vec<u8> = (0..(1usize << 20) + 3 * SEGMENT + 7).map(|i| (i % 251) as u8).collect();
        for len in [
            SEGMENT + 1,
            2 * SEGMENT,
            2 * SEGMENT + 1,
            3 * SEGMENT,
            5 * SEGMENT - 1,
            (1 << 20) - 1,
            1 << 20,
            (1 << 20) + 3 * SEGMENT + 7,
        ] {
            let d = &data[..len];
            let cvs = chaining_values(d);
            assert_eq!(root(&cvs, len as u64), Some(B3Digest::of(d)), "length {len}");
            // any one segment changed changes the root
            let mut other = cvs.clone();
            let last = other.len() - 1;
            other[last] = chaining_value(last, b"not this");
            assert_ne!(root(&other, len as u64), Some(B3Digest::of(d)));
            assert_eq!(root(&cvs[1..], len as u64), None, "wrong count of segments");
        }
        assert_eq!(root(&[chaining_value(0, &data[..SEGMENT])], SEGMENT as u64), None, "one segment has no tree");
    }
}
