//! narinfo: the text metadata a binary cache serves for each store path.
//!
//! Rendering follows Nix's field order exactly, so a narinfo Nix wrote
//! parses and renders back to the same bytes.

use std::fmt::{self, Write};

use thiserror::Error;

use crate::content_address::ContentAddress;
use crate::hash::{HashAlgo, NixHash};
use crate::signing::{fingerprint, Signature};
use crate::store_path::StorePath;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NarInfoError {
    #[error("line {line}: expected 'Key: value', got {text:?}")]
    BadLine { line: usize, text: String },
    #[error("line {line}: field {key} given twice")]
    Duplicate { line: usize, key: String },
    #[error("line {line}: invalid {key}: {reason}")]
    BadValue { line: usize, key: &'static str, reason: String },
    #[error("required field {0} is missing")]
    Missing(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarInfo {
    pub store_path: StorePath,
    pub url: String,
    pub compression: Option<String>,
    pub file_hash: Option<NixHash>,
    pub file_size: Option<u64>,
    pub nar_hash: NixHash,
    pub nar_size: u64,
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub system: Option<String>,
    pub signatures: Vec<Signature>,
    pub ca: Option<ContentAddress>,
}

impl NarInfo {
    pub fn parse(text: &str) -> Result<Self, NarInfoError> {
        let mut store_path = None;
        let mut url = None;
        let mut compression = None;
        let mut file_hash = None;
        let mut file_size = None;
        let mut nar_hash = None;
        let mut nar_size = None;
        let mut references = None;
        let mut deriver = None;
        let mut system = None;
        let mut signatures = Vec::new();
        let mut ca = None;

        // split on '\n' only, as Nix does: a '\r' is part of the value
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            if raw.is_empty() {
                continue;
            }
            let (key, value) = raw
                .split_once(": ")
                .or_else(|| raw.strip_suffix(':').map(|k| (k, "")))
                .ok_or_else(|| NarInfoError::BadLine { line, text: raw.chars().take(80).collect() })?;
            fn set<T>(slot: &mut Option<T>, v: T, line: usize, key: &str) -> Result<(), NarInfoError> {
                if slot.replace(v).is_some() {
                    return Err(NarInfoError::Duplicate { line, key: key.to_string() });
                }
                Ok(())
            }
            let bad = |key: &'static str, reason: String| NarInfoError::BadValue { line, key, reason };
            let int = |key: &'static str| value.parse::<u64>().map_err(|e| bad(key, e.to_string()));
            match key {
                "StorePath" => {
                    let p =
                        StorePath::from_absolute_path(value.as_bytes()).map_err(|e| bad("StorePath", e.to_string()))?;
                    set(&mut store_path, p, line, key)?
                }
                "URL" => set(&mut url, value.to_string(), line, key)?,
                "Compression" => set(&mut compression, value.to_string(), line, key)?,
                "FileHash" => {
                    let h = NixHash::parse(value, None).map_err(|e| bad("FileHash", e.to_string()))?;
                    set(&mut file_hash, h, line, key)?
                }
                "FileSize" => set(&mut file_size, int("FileSize")?, line, key)?,
                "NarHash" => {
                    let h = NixHash::parse(value, None).map_err(|e| bad("NarHash", e.to_string()))?;
                    if h.algo() != HashAlgo::Sha256 {
                        return Err(bad("NarHash", format!("{} is not sha256", h.algo())));
                    }
                    set(&mut nar_hash, h, line, key)?
                }
                "NarSize" => set(&mut nar_size, int("NarSize")?, line, key)?,
                "References" => {
                    let refs = value
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(|s| StorePath::from_basename(s.as_bytes()))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| bad("References", e.to_string()))?;
                    set(&mut references, refs, line, key)?
                }
                // Nix writes "unknown-deriver" in some old caches
                "Deriver" if value == "unknown-deriver" => {}
                "Deriver" => {
                    let p = StorePath::from_basename(value.as_bytes()).map_err(|e| bad("Deriver", e.to_string()))?;
                    set(&mut deriver, p, line, key)?
                }
                "System" => set(&mut system, value.to_string(), line, key)?,
                "Sig" => {
                    signatures.push(value.parse().map_err(|e: crate::signing::SigningError| bad("Sig", e.to_string()))?)
                }
                "CA" => {
                    let c = value
                        .parse()
                        .map_err(|e: crate::content_address::ContentAddressError| bad("CA", e.to_string()))?;
                    set(&mut ca, c, line, key)?
                }
                // Nix ignores fields it does not know; so do we
                _ => {}
            }
        }
        Ok(NarInfo {
            store_path: store_path.ok_or(NarInfoError::Missing("StorePath"))?,
            url: url.ok_or(NarInfoError::Missing("URL"))?,
            compression,
            file_hash,
            file_size,
            nar_hash: nar_hash.ok_or(NarInfoError::Missing("NarHash"))?,
            nar_size: nar_size.ok_or(NarInfoError::Missing("NarSize"))?,
            references: references.unwrap_or_default(),
            deriver,
            system,
            signatures,
            ca,
        })
    }

    /// The fingerprint signatures are made over.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.store_path, &self.nar_hash, self.nar_size, &self.references)
    }
}

impl fmt::Display for NarInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "StorePath: {}", self.store_path)?;
        writeln!(f, "URL: {}", self.url)?;
        if let Some(c) = &self.compression {
            writeln!(f, "Compression: {c}")?;
        }
        if let Some(h) = &self.file_hash {
            writeln!(f, "FileHash: {}", h.to_nix32_prefixed())?;
        }
        if let Some(s) = self.file_size {
            writeln!(f, "FileSize: {s}")?;
        }
        writeln!(f, "NarHash: {}", self.nar_hash.to_nix32_prefixed())?;
        writeln!(f, "NarSize: {}", self.nar_size)?;
        f.write_str("References: ")?;
        for (i, r) in self.references.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            f.write_str(&r.basename())?;
        }
        f.write_char('\n')?;
        if let Some(d) = &self.deriver {
            writeln!(f, "Deriver: {}", d.basename())?;
        }
        if let Some(s) = &self.system {
            writeln!(f, "System: {s}")?;
        }
        for s in &self.signatures {
            writeln!(f, "Sig: {s}")?;
        }
        if let Some(ca) = &self.ca {
            writeln!(f, "CA: {ca}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `nix copy --to file://` (Nix 2.8).
    const NIX_WRITTEN: &str = "StorePath: /nix/store/wipdr80wxxrlc00qzxc0qi5s6wwdkais-t1
URL: nar/18z4yyrr4d19j50irxxczhxnd6rxkgbzbmrfi11k2ill9bvggxpm.nar.xz
Compression: xz
FileHash: sha256:18z4yyrr4d19j50irxxczhxnd6rxkgbzbmrfi11k2ill9bvggxpm
FileSize: 168
NarHash: sha256:19l59z9nbs59axnhw6iqsz5bdagqb22kf0dp2zhkiq5m4b6k5247
NarSize: 288
References: 
Sig: test1:z++rxEFDD0eBLH/jYy91x5wSRPmmaleNGK7syNPrKAV6cayQjLj1Eb3lpnTXK1m1r96BD4h9CqDRDB2nC6NSCA==
CA: fixed:r:sha256:19l59z9nbs59axnhw6iqsz5bdagqb22kf0dp2zhkiq5m4b6k5247
";

    #[test]
    fn roundtrip() {
        let ni = NarInfo::parse(NIX_WRITTEN).unwrap();
        assert_eq!(ni.nar_size, 288);
        assert_eq!(ni.to_string(), NIX_WRITTEN);
        let pk: crate::signing::VerifyingKey = "test1:HTAjfvZ1uYGVQ4MLw4AMpx+mNBkJ514pXtO/yRjdfmU=".parse().unwrap();
        assert!(pk.verify(&ni.fingerprint(), &ni.signatures[0]));
    }

    /// Found by the narinfo fuzzer: a value ending in '\r' lost it on the
    /// round trip when lines were split with `str::lines`.
    #[test]
    fn carriage_returns_are_part_of_values() {
        let text = NIX_WRITTEN.replace("Compression: xz\n", "Compression: xz\r\r\n");
        let ni = NarInfo::parse(&text).unwrap();
        assert_eq!(ni.compression.as_deref(), Some("xz\r\r"));
        assert_eq!(NarInfo::parse(&ni.to_string()).unwrap(), ni);
    }

    #[test]
    fn errors() {
        assert_eq!(NarInfo::parse("URL: x\n").unwrap_err(), NarInfoError::Missing("StorePath"));
        assert!(matches!(NarInfo::parse("garbage\n"), Err(NarInfoError::BadLine { line: 1, .. })));
        let relative = NIX_WRITTEN.replace("StorePath: /nix/store/", "StorePath: ");
        assert!(matches!(NarInfo::parse(&relative), Err(NarInfoError::BadValue { key: "StorePath", .. })));
        let dup = NIX_WRITTEN.replace("NarSize: 288\n", "NarSize: 288\nNarSize: 1\n");
        assert!(matches!(NarInfo::parse(&dup), Err(NarInfoError::Duplicate { .. })));
        let badsize = NIX_WRITTEN.replace("NarSize: 288", "NarSize: -1");
        assert!(matches!(NarInfo::parse(&badsize), Err(NarInfoError::BadValue { key: "NarSize", .. })));
    }
}
