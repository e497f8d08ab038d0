//! A NAR as an HTTP body, streamed: rendered from the castore in a task into
//! a bounded pipe, compressed on the way out, cut to a byte range. Never a
//! whole NAR in memory. A rendering failure aborts the body (the client sees
//! a broken transfer, never a short NAR that looks complete).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{XzEncoder, ZstdEncoder};
use async_compression::Level;
use axum::body::Body;
use futures::StreamExt;
use snix_castore::Node;
use snix_store::composition::StoreServices;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio_util::io::ReaderStream;

use crate::range::ByteRange;
use crate::urls::Compression;

/// Bytes buffered between the renderer and the connection.
const PIPE: usize = 1 << 20;

/// The NAR of `node`, compressed as `compression`, cut to `range` (a range
/// is of the uncompressed NAR; callers only pass one with no compression).
pub fn nar_body(services: StoreServices, node: Node, compression: Compression, range: Option<ByteRange>) -> Body {
    let (w, r) = tokio::io::duplex(PIPE);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<io::Error>();
    tokio::spawn(async move {
        let complete = Arc::new(AtomicBool::new(false));
        let w = RangeWriter {
            inner: w,
            skip: range.map_or(0, |r| r.start),
            left: range.map(|r| r.len()),
            complete: complete.clone(),
        };
        if let Err(e) = snix_store::nar::render_nar(w, &node, &*services.blobs, &*services.dirs).await {
            if complete.load(Ordering::Relaxed) {
                return; // the range was sent; the rest of the NAR is not wanted
            }
            if failed_tx.is_closed() {
                return tracing::debug!(error = %e, "client went away during a NAR");
            }
            tracing::warn!(error = %e, "rendering a NAR failed; aborting its response");
            let _ = failed_tx.send(io::Error::other(e.to_string()));
        }
    });
    let reader: Pin<Box<dyn AsyncRead + Send>> = match compression {
        Compression::None => Box::pin(r),
        Compression::Zstd => Box::pin(ZstdEncoder::with_quality(BufReader::new(r), Level::Default)),
        Compression::Xz => Box::pin(XzEncoder::with_quality(BufReader::new(r), Level::Fastest)),
    };
    // after the last byte: the renderer's failure, if it failed
    let failure = futures::stream::once(failed_rx).filter_map(|r| async move { r.ok().map(Err) });
    Body::from_stream(ReaderStream::with_capacity(reader, 64 * 1024).chain(failure))
}

/// Passes on only bytes `skip..skip+left` of what is written to it; once
/// those are through, it says so and refuses more (ending the render).
struct RangeWriter<W> {
    inner: W,
    skip: u64,
    /// `None`: everything after `skip`
    left: Option<u64>,
    complete: Arc<AtomicBool>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for RangeWriter<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.skip > 0 {
            let n = self.skip.min(buf.len() as u64);
            self.skip -= n;
            return Poll::Ready(Ok(n as usize));
        }
        let want = match self.left {
            Some(0) => {
                self.complete.store(true, Ordering::Relaxed);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "range complete")));
            }
            Some(left) => left.min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..want]))?;
        if let Some(left) = &mut self.left {
            *left -= n as u64;
            if *left == 0 {
                self.complete.store(true, Ordering::Relaxed);
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_range_writer_passes_on_only_its_range() {
        let complete = Arc::new(AtomicBool::new(false));
        let mut out = Vec::new();
        let mut w = RangeWriter { inner: &mut out, skip: 5, left: Some(10), complete: complete.clone() };
        let data: Vec<u8> = (0..100).collect();
        let err = w.write_all(&data).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(complete.load(Ordering::Relaxed));
        assert_eq!(out, (5..15).collect::<Vec<u8>>());

        let mut out = Vec::new();
        let mut w = RangeWriter { inner: &mut out, skip: 98, left: None, complete: Arc::default() };
        w.write_all(&data).await.unwrap();
        assert_eq!(out, vec![98, 99]);
    }
}
