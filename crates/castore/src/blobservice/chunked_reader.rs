//! A seekable reader over a blob stored as chunks: fetches the chunk under the
//! read position, keeps the last few (readers such as the kernel's readahead
//! may go slightly back), and on sequential access reads the next few ahead.
//! A read that jumps elsewhere fetches only the chunks it touches (no
//! readahead is wasted on random access): readahead starts once two chunk
//! boundaries in a row were crossed by reading on, or at once for a reader
//! that starts at the beginning.

use std::collections::{BTreeMap, VecDeque};
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

/// Recently read chunks kept in memory.
const KEEP: usize = 3;

pub struct ChunkedReader {
    chunks: Arc<[ChunkMeta]>,
    /// start offset of each chunk
    starts: Arc<[u64]>,
    total: u64,
    pos: u64,
    /// recently read chunks, newest last
    recent: VecDeque<(usize, Bytes)>,
    /// fetches in flight, by chunk index
    inflight: BTreeMap<usize, JoinHandle<io::Result<Bytes>>>,
    /// a seek moved the position since the last read: the next read is not
    /// sequential, so it gets no readahead
    jumped: bool,
    /// The chunk read last, and how many chunks in a row were entered by
    /// reading on from the one before.
    current: Option<usize>,
    streak: usize,
    readahead: usize,
    fetch: ChunkFetcher,
}

impl ChunkedReader {
    /// `readahead`: how many chunks after the current one to fetch ahead on
    /// sequential access.
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
            recent: VecDeque::new(),
            inflight: BTreeMap::new(),
            jumped: false,
            current: None,
            streak: 0,
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

    /// Makes sure chunk `idx` — and on sequential access the `readahead`
    /// after it — is held or in flight; aborts fetches outside that window.
    fn schedule(&mut self, idx: usize, sequential: bool) {
        let last = if sequential { (idx + self.readahead).min(self.chunks.len() - 1) } else { idx };
        self.inflight.retain(|&i, h| {
            let keep = i >= idx && i <= last.max(idx + self.readahead);
            if !keep {
                h.abort();
            }
            keep
        });
        self.fetch_missing(idx..=last);
    }

    /// Starts fetching each chunk of `range` that is neither held nor in flight.
    fn fetch_missing(&mut self, range: std::ops::RangeInclusive<usize>) {
        for i in range {
            if !self.inflight.contains_key(&i) && !self.recent.iter().any(|(r, _)| *r == i) {
                let h = self.spawn_fetch(i);
                self.inflight.insert(i, h);
            }
        }
    }

    /// Tops up the readahead after chunk `idx` without touching other fetches.
    fn schedule_ahead(&mut self, idx: usize) {
        let last = (idx + self.readahead).min(self.chunks.len() - 1);
        self.fetch_missing(idx + 1..=last);
    }

    fn serve(&mut self, idx: usize, buf: &mut ReadBuf<'_>) -> bool {
        let Some((_, data)) = self.recent.iter().find(|(i, _)| *i == idx) else { return false };
        let off = (self.pos - self.starts[idx]) as usize;
        let n = fill_from(buf, &data[off..]);
        self.pos += n as u64;
        true
    }
}

impl Drop for ChunkedReader {
    fn drop(&mut self) {
        for (_, h) in std::mem::take(&mut self.inflight) {
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
        let read_on = !std::mem::take(&mut self.jumped);
        if self.current != Some(idx) {
            self.streak = match self.current {
                None if read_on && idx == 0 => 2,
                Some(c) if read_on && c + 1 == idx => self.streak + 1,
                _ => 0,
            };
            self.current = Some(idx);
        }
        let sequential = read_on && self.streak >= 2;
        if self.serve(idx, buf) {
            if sequential {
                // keep the window ahead full
                self.schedule_ahead(idx);
            }
            return Poll::Ready(Ok(()));
        }
        self.schedule(idx, sequential);
        let handle = self.inflight.get_mut(&idx).expect("scheduled");
        let data = match handle.poll_unpin(cx) {
            Poll::Pending => {
                // polled again later: still the same read
                self.jumped = !read_on;
                return Poll::Pending;
            }
            Poll::Ready(Err(e)) => Err(io::Error::other(format!("chunk fetch task failed: {e}"))),
            Poll::Ready(Ok(r)) => r,
        };
        self.inflight.remove(&idx);
        let data = data?;
        self.recent.push_back((idx, data));
        if self.recent.len() > KEEP {
            self.recent.pop_front();
        }
        self.serve(idx, buf);
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
        let new =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the blob"))?;
        if new != self.pos {
            self.jumped = true;
            self.pos = new;
        }
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
