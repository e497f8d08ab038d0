//! castore → NAR, streamed, byte-identical to `nix-store --dump` of the same
//! tree. File contents are fetched ahead of the writer, several at a time
//! and in NAR order, so a tree of many small files is not one round trip
//! per file; memory stays bounded by `PREFETCH × SMALL_FILE`.

use std::collections::HashMap;

use futures::StreamExt;
use futures::TryStreamExt;
use nix_compat::nar::listing::{Listing, ListingBuilder};
use nix_compat::nar::writer::AsyncNarWriter;
use nix_compat::nar::{NarEvent, NarWriteError};
use snix_castore::blobservice::BlobReader;
use snix_castore::blobservice::BlobService;
use snix_castore::directoryservice::DirectoryService;
use snix_castore::{B3Digest, Directory, Error, Node};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWrite};

/// Files up to this size are read whole ahead of the writer; larger ones are
/// opened ahead and streamed (their reader reads ahead by chunks).
const SMALL_FILE: u64 = 512 * 1024;
/// Files fetched ahead of the one being written.
const PREFETCH: usize = 32;

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("castore: {0}")]
    Castore(#[from] Error),
    #[error("blob {0} is missing")]
    MissingBlob(B3Digest),
    #[error("directory {0} is missing")]
    MissingDirectory(B3Digest),
    #[error("blob {digest} is longer than the {size} bytes its entry records")]
    BlobTooLong { digest: B3Digest, size: u64 },
    #[error("writing NAR: {0}")]
    Write(#[from] NarWriteError),
    #[error("reading blob: {0}")]
    Io(#[from] std::io::Error),
}

/// All directories under `node`, fetched in one recursive request.
async fn fetch_tree(dirs: &dyn DirectoryService, node: &Node) -> Result<HashMap<B3Digest, Directory>, RenderError> {
    let Node::Directory { digest, .. } = node else { return Ok(HashMap::new()) };
    let tree: Vec<Directory> = dirs.get_recursive(digest).try_collect().await.map_err(|e| match e {
        Error::NotFound(_) => RenderError::MissingDirectory(*digest),
        e => RenderError::Castore(e),
    })?;
    Ok(tree.into_iter().map(|d| (d.digest(), d)).collect())
}

/// The events of the NAR of the tree under `node` in order, file contents
/// left out: each `File` event comes with its blob's digest.
fn nar_events<'a>(
    node: &'a Node,
    tree: &'a HashMap<B3Digest, Directory>,
) -> impl Iterator<Item = Result<(NarEvent<'static>, Option<B3Digest>), RenderError>> + 'a {
    // explicit stack: a node to emit, or a directory's children still to go
    enum Step<'a> {
        Node(&'a Node),
        Dir(Box<dyn Iterator<Item = (&'a bytes::Bytes, &'a Node)> + Send + 'a>),
    }
    let mut stack = vec![Step::Node(node)];
    std::iter::from_fn(move || {
        let step = stack.pop()?;
        Some(Ok(match step {
            Step::Node(Node::Symlink { target }) => (NarEvent::Symlink { target: target.to_vec() }, None),
            Step::Node(Node::File { digest, size, executable }) => {
                (NarEvent::File { executable: *executable, size: *size }, Some(*digest))
            }
            Step::Node(Node::Directory { digest, .. }) => {
                let Some(dir) = tree.get(digest) else { return Some(Err(RenderError::MissingDirectory(*digest))) };
                stack.push(Step::Dir(Box::new(dir.nodes())));
                (NarEvent::DirectoryStart, None)
            }
            Step::Dir(mut children) => match children.next() {
                None => (NarEvent::DirectoryEnd, None),
                Some((name, child)) => {
                    stack.push(Step::Dir(children));
                    stack.push(Step::Node(child));
                    (NarEvent::Entry { name: name.to_vec() }, None)
                }
            },
        }))
    })
}

/// The files under `node` in NAR order: (digest, size).
fn files_in_nar_order(node: &Node, tree: &HashMap<B3Digest, Directory>) -> Result<Vec<(B3Digest, u64)>, RenderError> {
    let mut files = Vec::new();
    for ev in nar_events(node, tree) {
        if let (NarEvent::File { size, .. }, Some(digest)) = ev? {
            files.push((digest, size));
        }
    }
    Ok(files)
}

/// A file's contents, fetched ahead.
enum Fetched {
    Whole(bytes::Bytes),
    Stream(Box<dyn BlobReader>),
}

async fn fetch_file(blobs: &dyn BlobService, digest: B3Digest, size: u64) -> Result<Fetched, RenderError> {
    let mut r = blobs.open_read(&digest).await?.ok_or(RenderError::MissingBlob(digest))?;
    if size > SMALL_FILE {
        return Ok(Fetched::Stream(r));
    }
    let mut v = Vec::with_capacity(size as usize);
    (&mut r).take(size + 1).read_to_end(&mut v).await?;
    if v.len() as u64 > size {
        return Err(RenderError::BlobTooLong { digest, size });
    }
    Ok(Fetched::Whole(v.into()))
}

/// Writes the NAR of the tree under `node` to `w`.
pub async fn render_nar<W: AsyncWrite + Unpin + Send>(
    w: W,
    node: &Node,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
) -> Result<W, RenderError> {
    let tree = fetch_tree(dirs, node).await?;
    let mut fetched = futures::stream::iter(files_in_nar_order(node, &tree)?)
        .map(|(digest, size)| fetch_file(blobs, digest, size))
        .buffered(PREFETCH);
    let mut nw = AsyncNarWriter::new(w);
    for ev in nar_events(node, &tree) {
        let (ev, file) = ev?;
        let (NarEvent::File { executable, size }, Some(digest)) = (&ev, file) else {
            nw.event(&ev).await?;
            continue;
        };
        match fetched.next().await.expect("one fetch per file, in NAR order")? {
            Fetched::Whole(b) => nw.file_from_reader(*executable, *size, &mut &b[..]).await?,
            Fetched::Stream(mut r) => {
                nw.file_from_reader(*executable, *size, &mut r).await?;
                if r.read(&mut [0u8; 1]).await? != 0 {
                    return Err(RenderError::BlobTooLong { digest, size: *size });
                }
            }
        }
    }
    Ok(nw.finish().await?)
}

/// The `.ls` listing of the NAR of the tree under `node` (no blob read).
pub async fn nar_listing(node: &Node, dirs: &dyn DirectoryService) -> Result<Listing, RenderError> {
    let tree = fetch_tree(dirs, node).await?;
    let mut listing = ListingBuilder::new();
    for ev in nar_events(node, &tree) {
        listing.push(&ev?.0)?;
    }
    Ok(listing.finish()?)
}

/// A sink that hashes and counts.
struct HashSink {
    hasher: sha2::Sha256,
    len: u64,
}

impl AsyncWrite for HashSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use sha2::Digest;
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// NAR size and sha256 of the tree under `node`.
pub async fn calculate_nar(
    node: &Node,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
) -> Result<(u64, [u8; 32]), RenderError> {
    use sha2::Digest;
    let sink = render_nar(HashSink { hasher: sha2::Sha256::new(), len: 0 }, node, blobs, dirs).await?;
    Ok((sink.len, sink.hasher.finalize().into()))
}

/// Checks every directory and blob under `node` is present, so a path info
/// pointing at it is complete.
pub async fn ensure_complete(
    node: &Node,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
) -> Result<(), RenderError> {
    let tree = fetch_tree(dirs, node).await?;
    let mut files: Vec<B3Digest> = tree
        .values()
        .flat_map(|d| {
            d.nodes().filter_map(|(_, n)| if let Node::File { digest, .. } = n { Some(*digest) } else { None })
        })
        .collect();
    if let Node::File { digest, .. } = node {
        files.push(*digest);
    }
    files.sort();
    files.dedup();
    futures::stream::iter(files)
        .map(|d| async move {
            match blobs.has(&d).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(RenderError::MissingBlob(d)),
                Err(e) => Err(RenderError::Io(e)),
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
