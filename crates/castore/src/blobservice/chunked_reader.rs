//! A seekable reader over a blob stored as chunks: fetches the chunk under the
//! read position, keeps the last few (readers such as the kernel's readahead
//! may go slightly back), and on sequential access reads the next few ahead.
//! A read that jumps elsewhere fetches only the chunks it touches (no
//! readahead is wasted on random access) — and, given a [`RangeFetcher`],
//! only the 64 KiB-aligned piece of the chunk it touches: a random 4 KiB
//! read then costs one segment, not a chunk of up to 1 MiB. Readahead
//! starts once two chunk boundaries in a row were crossed by reading on, or
//! at once for a reader that starts at the beginning.

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

/// Fetches bytes `offset..offset + len` of one chunk by its digest; must
/// verify them against the digest.
pub type RangeFetcher = Arc<dyn Fn(B3Digest, u64, u64) -> BoxFuture<'static, io::Result<Bytes>> + Send + Sync>;

/// Recently read chunks (or pieces) kept in memory.
const KEEP: usize = 3;

/// Pieces fetched for random reads start and end on these bounds (the
/// castore's segments: what a backend reads and checks as one).
const PIECE_ALIGN: u64 = crate::digest::segments::SEGMENT as u64;

/// Bytes of chunk `idx` from `start` on: the whole chunk, or a piece.
struct Held {
    idx: usize,
    start: u64,
    data: Bytes,
}

/// A piece of a chunk being fetched: polled by the read waiting for it,
/// not spawned (a task would cost a thread wake-up each way).
struct PieceFetch {
    idx: usize,
    start: u64,
    end: u64,
    fetch: BoxFuture<'static, io::Result<Bytes>>,
}

pub struct ChunkedReader {
    chunks: Arc<[ChunkMeta]>,
    /// start offset of each chunk
    starts: Arc<[u64]>,
    total: u64,
    pos: u64,
    /// recently read chunks and pieces, newest last
    recent: VecDeque<Held>,
    /// the piece a random read waits for
    piece: Option<PieceFetch>,
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
    fetch_range: Option<RangeFetcher>,
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
            piece: None,
            inflight: BTreeMap::new(),
            jumped: false,
            current: None,
            streak: 0,
            readahead,
            fetch,
            fetch_range: None,
        }
    }

    /// Random reads fetch only the pieces of chunks they touch, with `fetch_range`.
    pub fn with_range_fetch(mut self, fetch_range: RangeFetcher) -> Self {
        self.fetch_range = Some(fetch_range);
        self
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
            let held = self.recent.iter().any(|h| h.idx == i && h.data.len() as u64 == self.chunks[i].size);
            if !self.inflight.contains_key(&i) && !held {
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
        let off = self.pos - self.starts[idx];
        let held = self.recent.iter().find(|h| h.idx == idx && h.start <= off && off < h.start + h.data.len() as u64);
        let Some(held) = held else { return false };
        let n = fill_from(buf, &held.data[(off - held.start) as usize..]);
        self.pos += n as u64;
        true
    }

    fn keep(&mut self, held: Held) {
        self.recent.push_back(held);
        if self.recent.len() > KEEP {
            self.recent.pop_front();
        }
    }

    /// For a random read of `want` bytes in chunk `idx` (not held, not in
    /// flight): the aligned piece to fetch, unless that is the whole chunk.
    fn piece_for(&self, idx: usize, want: usize) -> Option<(u64, u64)> {
        self.fetch_range.as_ref()?;
        let size = self.chunks[idx].size;
        let off = self.pos - self.starts[idx];
        let start = off / PIECE_ALIGN * PIECE_ALIGN;
        let end = (off + want.max(1) as u64).div_ceil(PIECE_ALIGN).saturating_mul(PIECE_ALIGN).min(size);
        (end - start < size).then_some((start, end))
    }

    /// Waits for the piece `start..end` of chunk `idx`, starting its fetch
    /// unless it is already in flight.
    fn poll_piece(&mut self, cx: &mut Context<'_>, idx: usize, start: u64, end: u64) -> Poll<io::Result<()>> {
        let off = self.pos - self.starts[idx];
        let covers = |p: &PieceFetch| p.idx == idx && p.start <= off && off < p.end;
        if !self.piece.as_ref().is_some_and(covers) {
            let digest = self.chunks[idx].digest;
            let fetch = (self.fetch_range.as_ref().expect("checked by piece_for"))(digest, start, end - start);
            // (a piece fetched before, no longer wanted, is dropped: cancelled)
            self.piece = Some(PieceFetch { idx, start, end, fetch });
        }
        let p = self.piece.as_mut().expect("set above");
        let Poll::Ready(data) = p.fetch.poll_unpin(cx) else { return Poll::Pending };
        let p = self.piece.take().expect("polled above");
        let data = data?;
        if data.len() as u64 != p.end - p.start {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("piece {}..{} of chunk {} has {} bytes", p.start, p.end, self.chunks[idx].digest, data.len()),
            )));
        }
        self.keep(Held { idx, start: p.start, data });
        Poll::Ready(Ok(()))
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
        if !sequential && !self.inflight.contains_key(&idx) {
            if let Some((start, end)) = self.piece_for(idx, buf.remaining()) {
                return match self.poll_piece(cx, idx, start, end) {
                    Poll::Pending => {
                        self.jumped = !read_on;
                        Poll::Pending
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        self.serve(idx, buf);
                        Poll::Ready(Ok(()))
                    }
                };
            }
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
        self.keep(Held { idx, start: 0, data });
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
