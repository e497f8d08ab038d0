//! Adding file system trees as store paths, as `nix-store --add` does.

use std::path::Path;

use nix_compat::content_address::ContentAddress;
use nix_compat::hash::NixHash;
use nix_compat::store_path::{make_source_path, StorePath};
use snix_castore::blobservice::BlobService;
use snix_castore::directoryservice::DirectoryService;
use thiserror::Error;

use crate::errors::Error;
use crate::nar::IngestError;
use crate::pathinfo::PathInfo;
use crate::pathinfoservice::PathInfoService;

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{path}: the name {name:?} is not a valid store path name: {reason}")]
    BadName { path: String, name: String, reason: String },
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("{path}: {source}")]
    Nar { path: String, source: nix_compat::nar::NarWriteError },
    #[error("serialising the tree: {0}")]
    Serialiser(tokio::task::JoinError),
    #[error("registering: {0}")]
    Register(#[from] Error),
}

/// Imports the tree at `path` under its basename, as a source path (NAR
/// sha256 content address, no references). The content is stored first, the
/// path info last.
pub async fn import_path(
    path: &Path,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
    infos: &dyn PathInfoService,
) -> Result<PathInfo, ImportError> {
    let shown = path.display().to_string();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| shown.clone());
    nix_compat::store_path::validate_name(name.as_bytes()).map_err(|e| ImportError::BadName {
        path: shown.clone(),
        name: name.clone(),
        reason: e.to_string(),
    })?;
    // One read of the tree: serialise it as a NAR on a blocking thread and
    // ingest that stream, which yields the castore node and the NAR hash
    // together (so they cannot disagree even if the tree changes meanwhile).
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let src = path.to_path_buf();
    let writing = tokio::task::spawn_blocking(move || {
        let sync_writer = tokio_util::io::SyncIoBridge::new(writer);
        nix_compat::nar::writer::write_path(&src, std::io::BufWriter::with_capacity(256 * 1024, sync_writer))
            .map(|_| ())
    });
    let ingested = crate::nar::ingest_nar(reader, blobs, dirs, None).await;
    let written = writing.await.map_err(ImportError::Serialiser)?;
    let ingested = match (ingested, written) {
        (Ok(i), Ok(())) => i,
        // a serialisation error (unreadable file, socket in the tree)
        // explains a truncated NAR better than the ingest error does
        (Ok(_), Err(source)) | (Err(IngestError::Nar(_)), Err(source)) => {
            return Err(ImportError::Nar { path: shown, source })
        }
        // otherwise the writer only failed because the ingest stopped reading
        (Err(e), _) => return Err(e.into()),
    };
    let (node, nar_size, sha) = (ingested.node, ingested.nar_size, ingested.nar_sha256);
    let store_path: StorePath = make_source_path(&name, &sha, [], false).expect("name validated");
    let info = PathInfo {
        store_path,
        node,
        references: vec![],
        nar_size,
        nar_sha256: sha,
        signatures: vec![],
        deriver: None,
        ca: Some(ContentAddress::Nar(NixHash::sha256(sha))),
    };
    Ok(infos.put(info).await?)
}
