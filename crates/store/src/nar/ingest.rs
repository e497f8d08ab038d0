//! NAR → castore: streams a NAR into blobs and directories while computing its
//! sha256 and size. Blob uploads run concurrently (bounded); directories are
//! put in one leaves-first batch at the end. The caller checks the result
//! against what it expected before registering anything.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use nix_compat::hash::{HashAlgo, Hasher, NixHash};
use nix_compat::nar::reader::{AsyncNarReader, NarReadError};
use nix_compat::nar::NarEvent;
use snix_castore::blobservice::BlobService;
use snix_castore::directory::DirectoryError;
use snix_castore::directoryservice::DirectoryService;
use snix_castore::{B3Digest, Directory, Error, Node};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::task::JoinHandle;

/// Blob uploads that may still be finishing while the NAR is read on.
const PENDING_UPLOADS: usize = 16;
const READ_BUF: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("malformed NAR: {0}")]
    Nar(#[from] NarReadError),
    #[error("NAR has data after its end")]
    TrailingData,
    #[error("NAR entry: {0}")]
    Invalid(#[from] DirectoryError),
    #[error("storing blob: {0}")]
    Blob(std::io::Error),
    #[error("castore: {0}")]
    Castore(#[from] Error),
}

/// What a NAR turned into.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub node: Node,
    pub nar_size: u64,
    pub nar_sha256: [u8; 32],
    /// Hash of the root file's contents with the requested algorithm, if the
    /// root is a regular file (for flat and text content addresses).
    pub flat_hash: Option<NixHash>,
}

/// Hashes and counts everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    len: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        use sha2::Digest;
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            self.hasher.update(new);
            self.len += new.len() as u64;
        }
        r
    }
}

enum Pending {
    File { id: usize, size: u64, executable: bool },
    Done(Node),
}

struct Frame {
    /// entries in NAR order (already sorted), some waiting for uploads
    entries: Vec<(Bytes, Pending)>,
    /// name under which this directory goes into its parent
    name: Option<Bytes>,
}

struct Uploads {
    pending: VecDeque<(usize, JoinHandle<std::io::Result<B3Digest>>)>,
    done: Vec<Option<B3Digest>>,
}

impl Uploads {
    async fn wait_front(&mut self) -> Result<(), IngestError> {
        let (id, h) = self.pending.pop_front().expect("non-empty");
        let d = h.await.map_err(|e| IngestError::Blob(std::io::Error::other(e)))?.map_err(IngestError::Blob)?;
        self.done[id] = Some(d);
        Ok(())
    }
    async fn digest(&mut self, id: usize) -> Result<B3Digest, IngestError> {
        while self.done[id].is_none() {
            self.wait_front().await?;
        }
        Ok(self.done[id].expect("resolved"))
    }
}

/// Reads a whole NAR from `r` (which must end with it) into the castore.
pub async fn ingest_nar<R: AsyncRead + Unpin + Send>(
    r: R,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
    flat_algo: Option<HashAlgo>,
) -> Result<Ingested, IngestError> {
    let counted = HashingReader { inner: r, hasher: <sha2::Sha256 as sha2::Digest>::new(), len: 0 };
    let mut nar = AsyncNarReader::new(tokio::io::BufReader::with_capacity(READ_BUF, counted));
    let mut uploads = Uploads { pending: VecDeque::new(), done: Vec::new() };
    let mut stack: Vec<Frame> = Vec::new();
    let mut batch: Vec<Directory> = Vec::new();
    let mut next_name: Option<Bytes> = None;
    let mut root: Option<Node> = None;
    // the file being written: (writer, id, size, executable)
    let mut writing: Option<(Box<dyn snix_castore::blobservice::BlobWriter>, usize, u64, bool)> = None;
    let mut flat_hasher = flat_algo.map(Hasher::new);

    // a finished node goes into its parent directory, or becomes the root
    fn place(stack: &mut [Frame], root: &mut Option<Node>, name: Option<Bytes>, p: Pending) {
        match stack.last_mut() {
            Some(f) => f.entries.push((name.expect("entries are named"), p)),
            None => {
                if let Pending::Done(n) = p {
                    *root = Some(n);
                }
            }
        }
    }

    while let Some(ev) = nar.next().await? {
        match ev {
            NarEvent::Entry { name } => next_name = Some(Bytes::from(name)),
            NarEvent::File { executable, size } => {
                let id = uploads.done.len();
                uploads.done.push(None);
                let w = blobs.open_write().await;
                writing = Some((w, id, size, executable));
                if !stack.is_empty() {
                    flat_hasher = None; // only a root file has a flat hash
                }
            }
            NarEvent::Contents(data) => {
                let (w, ..) = writing.as_mut().expect("Contents only inside a file");
                w.write_all(data).await.map_err(IngestError::Blob)?;
                if let Some(h) = flat_hasher.as_mut() {
                    h.update(data);
                }
            }
            NarEvent::Symlink { target } => {
                place(&mut stack, &mut root, next_name.take(), Pending::Done(Node::Symlink { target: target.into() }));
                flat_hasher = None;
            }
            NarEvent::DirectoryStart => {
                stack.push(Frame { entries: Vec::new(), name: next_name.take() });
                flat_hasher = None;
            }
            NarEvent::DirectoryEnd => {
                let frame = stack.pop().expect("balanced");
                let mut dir = Directory::new();
                for (name, p) in frame.entries {
                    let node = match p {
                        Pending::Done(n) => n,
                        Pending::File { id, size, executable } => {
                            Node::File { digest: uploads.digest(id).await?, size, executable }
                        }
                    };
                    dir.add(name, node)?;
                }
                let node = Node::Directory { digest: dir.digest(), size: dir.size() };
                batch.push(dir);
                place(&mut stack, &mut root, frame.name, Pending::Done(node));
            }
            NarEvent::End => {}
        }
        // a file whose contents are complete: finish its upload in the background
        if writing.is_some() && nar.contents_remaining() == Some(0) {
            let (mut w, id, size, executable) = writing.take().expect("checked");
            uploads.pending.push_back((id, tokio::spawn(async move { w.close().await })));
            if stack.is_empty() {
                let digest = uploads.digest(id).await?;
                root = Some(Node::File { digest, size, executable });
            } else {
                place(&mut stack, &mut root, next_name.take(), Pending::File { id, size, executable });
            }
            while uploads.pending.len() > PENDING_UPLOADS {
                uploads.wait_front().await?;
            }
        }
    }
    // the NAR must be all there is
    let mut rest = nar.into_inner();
    if !rest.fill_buf().await.map_err(|e| IngestError::Nar(e.into()))?.is_empty() {
        return Err(IngestError::TrailingData);
    }
    while !uploads.pending.is_empty() {
        uploads.wait_front().await?;
    }
    let counted = rest.into_inner();
    let node = root.expect("a complete NAR has a root");
    if !batch.is_empty() {
        dirs.put_batch(batch).await?;
    }
    Ok(Ingested {
        node,
        nar_size: counted.len,
        nar_sha256: sha2::Digest::finalize(counted.hasher).into(),
        flat_hash: flat_hasher.map(Hasher::finish),
    })
}
