//! Blob storage: contents addressed by their BLAKE3 digest.
//!
//! One trait, one backend per file, chosen by URL in
//! [`crate::composition`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::digest::B3Digest;

mod chunked_reader;
mod combinator;
pub mod grpc;
mod memory;
mod objectstore_file;

pub use chunked_reader::{ChunkFetcher, ChunkedReader, RangeFetcher};
pub use combinator::CombinedBlobService;
pub use grpc::GrpcBlobService;
pub use memory::MemoryBlobService;
pub use objectstore_file::ObjectStoreFileBlobService;

/// An object a backend stores, as garbage collection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: B3Digest,
    /// When it was last written. Writing a blob that is already stored
    /// writes it again: its chunks and chunk list count as new.
    pub written: SystemTime,
    /// Bytes it takes in the backend.
    pub stored_size: u64,
    /// A chunk (`true`), or the chunk list of a blob of several chunks. A
    /// blob stored whole is its one chunk.
    pub is_chunk: bool,
}

/// One chunk of a blob; itself a blob readable by its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub digest: B3Digest,
    pub size: u64,
}

/// A blob's contents: readable and seekable, never all in memory at once
/// (backends keep at most a few chunks).
pub trait BlobReader: AsyncRead + AsyncSeek + Unpin + Send {}
impl<T: AsyncRead + AsyncSeek + Unpin + Send> BlobReader for T {}

/// Receives a blob's contents. Nothing is visible until [`close`](Self::close)
/// succeeds; dropping it unclosed discards everything written.
#[async_trait::async_trait]
pub trait BlobWriter: AsyncWrite + Unpin + Send {
    /// Finishes the blob, makes it visible, and returns its digest.
    async fn close(&mut self) -> io::Result<B3Digest>;
}

#[async_trait::async_trait]
pub trait BlobService: Send + Sync + 'static {
    async fn has(&self, digest: &B3Digest) -> io::Result<bool>;

    /// The blob's chunks, in order; `None` if the blob is absent, an empty
    /// list if it is stored whole (read it as one piece).
    async fn chunks(&self, digest: &B3Digest) -> io::Result<Option<Vec<ChunkMeta>>>;

    /// Opens the blob for reading; `None` if absent.
    async fn open_read(&self, digest: &B3Digest) -> io::Result<Option<Box<dyn BlobReader>>>;

    /// The blob in one buffer, without copying, when the backend holds it
    /// as one piece (in memory, or a single chunk it reads whole anyway);
    /// `None` when it is absent or stored in chunks — use `open_read`.
    /// Lets the gRPC server send a chunk without copying it again.
    async fn read_unchunked(&self, _digest: &B3Digest) -> io::Result<Option<Bytes>> {
        Ok(None)
    }

    /// Bytes `offset..offset + len` of the blob (fewer at its end, none past
    /// it), checked as a whole read is; `None` if it is absent. Backends
    /// that can read and check a piece of a chunk without the rest do so —
    /// what makes a random read of a large file cheap.
    async fn read_range(&self, digest: &B3Digest, offset: u64, len: u64) -> io::Result<Option<Bytes>> {
        read_range_via_reader(self, digest, offset, len).await
    }

    /// Starts a new blob.
    async fn open_write(&self) -> Box<dyn BlobWriter>;

    /// Everything stored: each chunk, and each chunk list.
    fn list(&self) -> BoxStream<'static, io::Result<StoredBlob>>;

    /// Removes what is stored under `digest` — its chunk list, else its
    /// chunk — unless it was written at or after `unless_written_since`
    /// (a writer that just reused it keeps it). Returns the bytes freed,
    /// `None` if nothing was removed. Another blob's chunks are not touched.
    async fn delete(&self, digest: &B3Digest, unless_written_since: SystemTime) -> io::Result<Option<u64>>;
}

#[async_trait::async_trait]
impl<T: BlobService + ?Sized> BlobService for Arc<T> {
    async fn has(&self, digest: &B3Digest) -> io::Result<bool> {
        (**self).has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> io::Result<Option<Vec<ChunkMeta>>> {
        (**self).chunks(digest).await
    }
    async fn open_read(&self, digest: &B3Digest) -> io::Result<Option<Box<dyn BlobReader>>> {
        (**self).open_read(digest).await
    }
    async fn read_unchunked(&self, digest: &B3Digest) -> io::Result<Option<Bytes>> {
        (**self).read_unchunked(digest).await
    }
    async fn read_range(&self, digest: &B3Digest, offset: u64, len: u64) -> io::Result<Option<Bytes>> {
        (**self).read_range(digest, offset, len).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        (**self).open_write().await
    }
    fn list(&self) -> BoxStream<'static, io::Result<StoredBlob>> {
        (**self).list()
    }
    async fn delete(&self, digest: &B3Digest, unless_written_since: SystemTime) -> io::Result<Option<u64>> {
        (**self).delete(digest, unless_written_since).await
    }
}

/// [`BlobService::read_range`] through [`BlobService::open_read`]: seek, then read.
pub(crate) async fn read_range_via_reader<S: BlobService + ?Sized>(
    svc: &S,
    digest: &B3Digest,
    offset: u64,
    len: u64,
) -> io::Result<Option<Bytes>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Some(mut r) = svc.open_read(digest).await? else { return Ok(None) };
    r.seek(io::SeekFrom::Start(offset)).await?;
    let mut v = Vec::new();
    r.take(len).read_to_end(&mut v).await?;
    Ok(Some(v.into()))
}

/// Bytes `offset..offset + len` of `data`, clamped to its end (what
/// [`BlobService::read_range`] returns, cut from a whole blob).
pub(crate) fn slice_range(data: &Bytes, offset: u64, len: u64) -> Bytes {
    let size = data.len() as u64;
    data.slice(offset.min(size) as usize..offset.saturating_add(len).min(size) as usize)
}

/// Reads a whole blob into memory (small blobs and tests only).
pub async fn read_to_vec(svc: &dyn BlobService, digest: &B3Digest) -> io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let Some(mut r) = svc.open_read(digest).await? else { return Ok(None) };
    let mut v = Vec::new();
    r.read_to_end(&mut v).await?;
    Ok(Some(v))
}

/// Writes `data` as a blob and returns its digest.
pub async fn put_bytes(svc: &dyn BlobService, data: &[u8]) -> io::Result<B3Digest> {
    use tokio::io::AsyncWriteExt;
    let mut w = svc.open_write().await;
    w.write_all(data).await?;
    w.close().await
}

/// A `BlobWriter` that hands each written buffer to a background task over a
/// bounded channel (backpressure), and on close awaits the task's result.
/// Backends implement only the task. `close` sends an empty buffer as the
/// commit marker: a task whose channel ends without it must discard the blob
/// (the writer was dropped).
pub(crate) struct ChannelWriter {
    tx: Option<tokio_util::sync::PollSender<Bytes>>,
    result: Option<BoxFuture<'static, io::Result<B3Digest>>>,
}

impl ChannelWriter {
    /// `task` receives the written buffers; on the empty commit marker it
    /// finishes the blob and returns its digest.
    pub(crate) fn spawn<F>(capacity: usize, task: impl FnOnce(tokio::sync::mpsc::Receiver<Bytes>) -> F) -> Self
    where
        F: std::future::Future<Output = io::Result<B3Digest>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        let handle = tokio::spawn(task(rx));
        let result =
            async move { handle.await.map_err(|e| io::Error::other(format!("blob writer task failed: {e}")))? }.boxed();
        ChannelWriter { tx: Some(tokio_util::sync::PollSender::new(tx)), result: Some(result) }
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "blob writer already closed")));
        };
        match tx.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "blob writer task ended early")))
            }
            Poll::Ready(Ok(())) => {
                if buf.is_empty() {
                    // never send an empty buffer: it is the commit marker
                    tx.abort_send();
                    return Poll::Ready(Ok(0));
                }
                let _ = tx.send_item(Bytes::copy_from_slice(buf));
                Poll::Ready(Ok(buf.len()))
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait::async_trait]
impl BlobWriter for ChannelWriter {
    async fn close(&mut self) -> io::Result<B3Digest> {
        if let Some(mut tx) = self.tx.take() {
            // a failed send means the task already ended; its result says why
            if futures::future::poll_fn(|cx| tx.poll_reserve(cx)).await.is_ok() {
                let _ = tx.send_item(Bytes::new());
            }
        }
        match self.result.take() {
            Some(r) => r.await,
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "blob writer already closed")),
        }
    }
}

/// An in-memory `BlobReader` over one buffer (tokio implements the traits
/// for `std::io::Cursor`).
pub(crate) fn bytes_reader(b: Bytes) -> Box<dyn BlobReader> {
    Box::new(std::io::Cursor::new(b))
}

/// Adapts `ReadBuf` filling from a byte slice.
pub(crate) fn fill_from(buf: &mut ReadBuf<'_>, src: &[u8]) -> usize {
    let n = src.len().min(buf.remaining());
    buf.put_slice(&src[..n]);
    n
}

#[cfg(test)]
mod tests;
