//! What a request path names, and the URLs we put in narinfos. Pure: text
//! in, values out.
//!
//! Our NAR URLs name the store path *and* the NAR hash
//! (`nar/<path hash>-<nar hash>.nar[.zst|.xz]`), so a NAR is found by its
//! path's digest and a URL from before the path was registered again with
//! other content answers 404, never other bytes.

use std::fmt;
use std::str::FromStr;

use nix_compat::nixbase32;
use nix_compat::store_path::ENCODED_DIGEST_LEN;
use thiserror::Error;

/// How a NAR is compressed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Xz,
}

impl Compression {
    /// The narinfo's `Compression:` value.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        }
    }

    /// What follows `.nar` in the file name.
    fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Zstd => ".zst",
            Compression::Xz => ".xz",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Compression::None => "application/x-nix-nar",
            Compression::Zstd => "application/zstd",
            Compression::Xz => "application/x-xz",
        }
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            "xz" => Ok(Compression::Xz),
            other => Err(format!("unknown compression {other:?}: use none, zstd or xz")),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?} is not a store path hash (32 nixbase32 characters)")]
    BadPathHash(String),
    #[error("{0:?} is not a NAR URL of this cache (nar/<path hash>-<nar hash>.nar[.zst|.xz])")]
    BadNarUrl(String),
}

/// A top-level file: `<hash>.narinfo` or `<hash>.ls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathFile {
    NarInfo([u8; 20]),
    Listing([u8; 20]),
}

fn path_digest(hash: &str) -> Result<[u8; 20], UrlError> {
    if hash.len() != ENCODED_DIGEST_LEN {
        return Err(UrlError::BadPathHash(hash.chars().take(64).collect()));
    }
    nixbase32::decode_fixed(hash.as_bytes()).map_err(|_| UrlError::BadPathHash(hash.to_string()))
}

impl PathFile {
    /// `None` for a name that is neither (the caller's 404).
    pub fn parse(file: &str) -> Option<Result<PathFile, UrlError>> {
        if let Some(hash) = file.strip_suffix(".narinfo") {
            return Some(path_digest(hash).map(PathFile::NarInfo));
        }
        if let Some(hash) = file.strip_suffix(".ls") {
            return Some(path_digest(hash).map(PathFile::Listing));
        }
        None
    }
}

/// A NAR this cache serves: which path, which content, how compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NarUrl {
    pub path_digest: [u8; 20],
    pub nar_sha256: [u8; 32],
    pub compression: Compression,
}

impl NarUrl {
    /// Parses the file name after `nar/`.
    pub fn parse(file: &str) -> Result<NarUrl, UrlError> {
        let bad = || UrlError::BadNarUrl(file.chars().take(200).collect());
        let (stem, compression) = if let Some(s) = file.strip_suffix(".nar") {
            (s, Compression::None)
        } else if let Some(s) = file.strip_suffix(".nar.zst") {
            (s, Compression::Zstd)
        } else if let Some(s) = file.strip_suffix(".nar.xz") {
            (s, Compression::Xz)
        } else {
            return Err(bad());
        };
        let (path, nar) = stem.split_once('-').ok_or_else(bad)?;
        let path_digest = path_digest(path).map_err(|_| bad())?;
        if nar.len() != nixbase32::encoded_len(32) {
            return Err(bad());
        }
        let nar_sha256 = nixbase32::decode_fixed(nar.as_bytes()).map_err(|_| bad())?;
        Ok(NarUrl { path_digest, nar_sha256, compression })
    }
}

impl fmt::Display for NarUrl {
    /// The narinfo's `URL:` value (relative to the cache).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nar/{}-{}.nar{}",
            nixbase32::encode(&self.path_digest),
            nixbase32::encode(&self.nar_sha256),
            self.compression.suffix()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "wipdr80wxxrlc00qzxc0qi5s6wwdkais";
    const NAR: &str = "19l59z9nbs59axnhw6iqsz5bdagqb22kf0dp2zhkiq5m4b6k5247";

    #[test]
    fn path_files() {
        let d = nixbase32::decode_fixed::<20>(HASH.as_bytes()).unwrap();
        assert_eq!(PathFile::parse(&format!("{HASH}.narinfo")), Some(Ok(PathFile::NarInfo(d))));
        assert_eq!(PathFile::parse(&format!("{HASH}.ls")), Some(Ok(PathFile::Listing(d))));
        assert_eq!(PathFile::parse("nix-cache-info"), None);
        assert!(matches!(PathFile::parse("short.narinfo"), Some(Err(UrlError::BadPathHash(_)))));
        // 'e' is not a nixbase32 character
        let bad = format!("{}.narinfo", HASH.replace('w', "e"));
        assert!(matches!(PathFile::parse(&bad), Some(Err(UrlError::BadPathHash(_)))));
    }

    #[test]
    fn nar_urls_round_trip() {
        for (suffix, c) in [(".nar", Compression::None), (".nar.zst", Compression::Zstd), (".nar.xz", Compression::Xz)]
        {
            let file = format!("{HASH}-{NAR}{suffix}");
            let u = NarUrl::parse(&file).unwrap();
            assert_eq!(u.compression, c);
            assert_eq!(u.to_string(), format!("nar/{file}"));
        }
        for bad in [
            format!("{HASH}-{NAR}.nar.bz2"),
            format!("{HASH}{NAR}.nar"),
            format!("{HASH}-{}.nar", &NAR[1..]),
            format!("{}-{NAR}.nar", &HASH[1..]),
            "../../etc/passwd".to_string(),
        ] {
            assert!(NarUrl::parse(&bad).is_err(), "{bad}");
        }
    }
}
