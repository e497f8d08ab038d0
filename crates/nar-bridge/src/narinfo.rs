//! A path info as the narinfo a binary cache serves: Nix's fields, our NAR
//! URL, and our signature added when we have a key. Pure.

use nix_compat::narinfo::NarInfo;
use nix_compat::signing::SigningKey;
use snix_store::PathInfo;

use crate::urls::{Compression, NarUrl};

/// The narinfo of `info`, pointing at its NAR compressed as `compression`.
pub fn narinfo(info: &PathInfo, compression: Compression, key: Option<&SigningKey>) -> NarInfo {
    let url = NarUrl { path_digest: *info.store_path.digest(), nar_sha256: info.nar_sha256, compression };
    let mut signatures = info.well_formed_signatures();
    if let Some(key) = key {
        let ours = key.sign(&info.fingerprint());
        if !signatures.contains(&ours) {
            signatures.push(ours);
        }
    }
    // only an uncompressed NAR's file hash and size are known without
    // compressing it
    let uncompressed = compression == Compression::None;
    NarInfo {
        store_path: info.store_path.clone(),
        url: url.to_string(),
        compression: Some(compression.name().to_string()),
        file_hash: uncompressed.then(|| info.nar_hash()),
        file_size: uncompressed.then_some(info.nar_size),
        nar_hash: info.nar_hash(),
        nar_size: info.nar_size,
        references: info.references.clone(),
        deriver: info.deriver.clone(),
        system: None,
        signatures,
        ca: info.ca.clone(),
    }
}
