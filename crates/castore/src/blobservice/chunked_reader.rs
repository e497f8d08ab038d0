//! A seekable reader over a blob stored as chunks: fetches the chunk under the
//! read position, keeps only that one, and reads ahead the next few on
//! sequential access.

use std::collections::VecDeque;
use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::task::JoinHandle;

use super::{fill_from, ChunkMeta};
use crate::digest::B3Digest;

/// Fetches one chunk's bytes by digest; must verify them against the digest.
pub type ChunkFetcher = Arc<dyn Fn(B3Digest) -> BoxFuture<'static, io::Result<Bytes>> + Send + Sync>;

pub struct ChunkedReader {
    chunks: Arc<[ChunkMeta]>,
    /// start offset of each chunk
    starts: Arc<[u64]>,
    total: u64,
    pos: u64,
    current: Option<(usize, Bytes)>,
    /// fetches in flight, in chunk order: (index, task)
    inflight: VecDeque<(usize, JoinHandle<io::Result<Bytes>>)>,
    readahead: usize,
    fetch: ChunkFetcher,
}

impl ChunkedReader {
    /// `readahead`: how many chunks after the current one to fetch ahead.
    pub fn new(chunks: Vec<ChunkMeta>, fetch: ChunkFetcher, readahead: usize) -> Self {
        let mut starts = Vec::with_capacity(chunks.len());
        let mut total = 0u64;
        for c in &chunks {
            starts.push(total);
            total += c.size;
        }
        ChunkedReader {
            chunks: chunks.into(),
            starts: starts.into(),
            total,
            pos: 0,
            current: None,
            inflight: VecDeque::new(),
            readahead,
            fetch,
        }
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    fn chunk_at(&self, pos: u64) -> usize {
        // the last chunk starting at or before pos
        self.starts.partition_point(|&s| s <= pos) - 1
    }

    fn spawn_fetch(&self, idx: usize) -> JoinHandle<io::Result<Bytes>> {
        let meta = self.chunks[idx].clone();
        let fut = (self.fetch)(meta.digest);
        tokio::spawn(async move {
            let data = fut.await?;
            if data.len() as u64 != meta.size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("chunk {} has {} bytes, expected {}", meta.digest, data.len(), meta.size),
                ));
            }
            Ok(data)
        })
    }

    /// Makes sure chunks idx..=idx+readahead are current or in flight, in order.
    fn schedule(&mut self, idx: usize) {
        // drop fetches that are behind or far off the new position
        while let Some((i, _)) = self.inflight.front() {
            if *i < idx || *i > idx + self.readahead {
                let (_, h) = self.inflight.pop_front().expect("non-empty");
                h.abort();
            } else {
                break;
            }
        }
        if self.inflight.front().is_some_and(|(i, _)| *i != idx) {
            for (_, h) in self.inflight.drain(..) {
                h.abort();
            }
        }
        let mut next = self.inflight.back().map(|(i, _)| i + 1).unwrap_or(idx);
        let last = (idx + self.readahead).min(self.chunks.len() - 1);
        while next <= last {
            let h = self.spawn_fetch(next);
            self.inflight.push_back((next, h));
            next += 1;
        }
    }
}

impl Drop for ChunkedReader {
    fn drop(&mut self) {
        for (_, h) in self.inflight.drain(..) {
            h.abort();
        }
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos >= self.total || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let idx = self.chunk_at(self.pos);
        if let Some((cur, data)) = &self.current {
            if *cur == idx {
                let off = (self.pos - self.starts[idx]) as usize;
                let n = fill_from(buf, &data[off..]);
                self.pos += n as u64;
                return Poll::Ready(Ok(()));
            }
        }
        self.schedule(idx);
        let (i, handle) = self.inflight.front_mut().expect("scheduled");
        debug_assert_eq!(*i, idx);
        let data = match handle.poll_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => Err(io::Error::other(format!("chunk fetch task failed: {e}"))),
            Poll::Ready(Ok(r)) => r,
        };
        self.inflight.pop_front();
        let data = data?;
        let off = (self.pos - self.starts[idx]) as usize;
        let n = fill_from(buf, &data[off..]);
        self.pos += n as u64;
        self.current = Some((idx, data));
        // keep the read-ahead window full
        if idx + 1 < self.chunks.len() {
            self.schedule(idx + 1);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for ChunkedReader {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let new = match position {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.total.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the blob"))?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
