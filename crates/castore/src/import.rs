//! Ingesting a file system tree into the castore: files become blobs
//! (uploaded concurrently, bounded), directories become `Directory` messages
//! put in one leaves-first batch — after every blob is stored.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use crate::blobservice::BlobService;
use crate::directory::{Directory, DirectoryError, Node};
use crate::directoryservice::DirectoryService;
use crate::errors::Error;

/// Blob uploads in flight at once during an ingest.
pub const CONCURRENT_UPLOADS: usize = 16;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: unsupported file type (only regular files, directories and symlinks)")]
    UnsupportedFileType { path: PathBuf },
    #[error("{path}: {source}")]
    Invalid { path: PathBuf, source: DirectoryError },
    #[error("{path}: file changed while being ingested ({expected} → {got} bytes)")]
    FileChanged { path: PathBuf, expected: u64, got: u64 },
    #[error("storing: {0}")]
    Store(#[from] Error),
}

/// One walked entry, in post-order (children before their directory).
enum Walked {
    File {
        path: PathBuf,
        size: u64,
        executable: bool,
    },
    Symlink {
        target: Bytes,
    },
    /// a directory: child `names[i]` is entry `children[i]` of the walk
    Dir {
        names: Vec<Bytes>,
        children: Vec<usize>,
    },
}

fn walk(path: &Path, out: &mut Vec<Walked>) -> Result<usize, IngestError> {
    let io = |source| IngestError::Io { path: path.to_path_buf(), source };
    let meta = fs::symlink_metadata(path).map_err(io)?;
    let ft = meta.file_type();
    let entry = if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io)?;
        Walked::Symlink { target: Bytes::copy_from_slice(target.as_os_str().as_bytes()) }
    } else if ft.is_file() {
        Walked::File { path: path.to_path_buf(), size: meta.len(), executable: meta.permissions().mode() & 0o100 != 0 }
    } else if ft.is_dir() {
        let mut names: Vec<std::ffi::OsString> =
            fs::read_dir(path).map_err(io)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>().map_err(io)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut children = Vec::with_capacity(names.len());
        for n in &names {
            children.push(walk(&path.join(n), out)?);
        }
        Walked::Dir { names: names.iter().map(|n| Bytes::copy_from_slice(n.as_bytes())).collect(), children }
    } else {
        return Err(IngestError::UnsupportedFileType { path: path.to_path_buf() });
    };
    out.push(entry);
    Ok(out.len() - 1)
}

/// Uploads one file as a blob, checking it did not change size meanwhile.
async fn upload(blobs: &dyn BlobService, path: &Path, size: u64) -> Result<crate::B3Digest, IngestError> {
    let io = |source| IngestError::Io { path: path.to_path_buf(), source };
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    let mut w = blobs.open_write().await;
    let copied = tokio::io::copy(&mut f, &mut w).await.map_err(io)?;
    if copied != size {
        return Err(IngestError::FileChanged { path: path.to_path_buf(), expected: size, got: copied });
    }
    w.flush().await.map_err(io)?;
    w.close().await.map_err(io)
}

/// Ingests the tree at `path` and returns its root node. Every blob and
/// directory is stored before this returns; on error the directories are not
/// stored at all (blobs already uploaded stay, unreferenced).
pub async fn ingest_path(
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
    path: &Path,
) -> Result<Node, IngestError> {
    let root_path = path.to_path_buf();
    let walked = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        walk(&root_path, &mut out).map(|_| out)
    })
    .await
    .map_err(|e| IngestError::Store(Error::Storage(e.to_string())))??;

    // upload every file, bounded concurrency
    let files: Vec<(usize, PathBuf, u64)> = walked
        .iter()
        .enumerate()
        .filter_map(|(i, w)| match w {
            Walked::File { path, size, .. } => Some((i, path.clone(), *size)),
            _ => None,
        })
        .collect();
    let mut digests = vec![None; walked.len()];
    let uploaded: Vec<(usize, crate::B3Digest)> = futures::stream::iter(files)
        .map(|(i, p, size)| async move { upload(blobs, &p, size).await.map(|d| (i, d)) })
        .buffer_unordered(CONCURRENT_UPLOADS)
        .try_collect()
        .await?;
    for (i, d) in uploaded {
        digests[i] = Some(d);
    }

    // build directories bottom-up (the walk is post-order)
    let mut nodes: Vec<Option<Node>> = Vec::with_capacity(walked.len());
    let mut batch = Vec::new();
    for (i, w) in walked.into_iter().enumerate() {
        let node = match w {
            Walked::File { size, executable, .. } => {
                Node::File { digest: digests[i].expect("uploaded"), size, executable }
            }
            Walked::Symlink { target } => Node::Symlink { target },
            Walked::Dir { names, children } => {
                let mut d = Directory::new();
                for (name, c) in names.into_iter().zip(children) {
                    let child = nodes[c].take().expect("child walked before its directory");
                    d.add(name, child).map_err(|source| IngestError::Invalid { path: path.to_path_buf(), source })?;
                }
                let node = Node::Directory { digest: d.digest(), size: d.size() };
                batch.push(d);
                node
            }
        };
        nodes.push(Some(node));
    }
    let root = nodes.pop().flatten().expect("the walk yields the root last");
    if !batch.is_empty() {
        dirs.put_batch(batch).await?;
    }
    Ok(root)
}

/// A one-line description of a node: `directory <digest> <size>`, `file
/// <digest> <size> [executable]`, `symlink <target>`.
pub fn describe(node: &Node) -> String {
    match node {
        Node::Directory { digest, size } => format!("directory {digest} {size}"),
        Node::File { digest, size, executable } => {
            format!("file {digest} {size}{}", if *executable { " executable" } else { "" })
        }
        Node::Symlink { target } => format!("symlink {}", String::from_utf8_lossy(target)),
    }
}

/// Reads a blob fully to `out` (for `cat`).
pub async fn copy_blob_to<W: tokio::io::AsyncWrite + Unpin>(
    blobs: &dyn BlobService,
    digest: &crate::B3Digest,
    out: &mut W,
) -> Result<u64, Error> {
    let mut r = blobs.open_read(digest).await?.ok_or_else(|| Error::NotFound(format!("blob {digest}")))?;
    Ok(tokio::io::copy(&mut r, out).await?)
}

/// Lists a directory's entries (for `ls`).
pub async fn list_directory(dirs: &dyn DirectoryService, digest: &crate::B3Digest) -> Result<Vec<String>, Error> {
    let d = dirs.get(digest).await?.ok_or_else(|| Error::NotFound(format!("directory {digest}")))?;
    Ok(d.nodes().map(|(name, node)| format!("{}\t{}", String::from_utf8_lossy(name), describe(node))).collect())
}
