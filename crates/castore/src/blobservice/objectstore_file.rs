//! `objectstore+file:///path` — blobs on the local file system, split into
//! content-defined chunks (FastCDC), each chunk a file named by its BLAKE3
//! digest, so equal chunks across blobs are stored once.
//!
//! Layout under the root:
//! - `chunks/<2 hex>/<64 hex>` — one chunk. Longer than one 64 KiB
//!   segment: `S`, its length, then per segment its stored length (zstd or
//!   raw) and its BLAKE3 chaining value, then the segments — each compressed
//!   on its own, so a range of the chunk is read, decompressed and checked
//!   against the chunk's digest without the rest (see
//!   [`crate::digest::segments`]). One segment or less: `Z` then a zstd
//!   frame, or `R` then the raw bytes. Either way a piece is kept raw when
//!   compression would save less than 1/8 (reading incompressible data then
//!   costs no decompression);
//! - `blobs/<2 hex>/<64 hex>` — the chunk list of a blob of more than one
//!   chunk (a one-chunk blob *is* its chunk, so needs no list);
//! - `tmp/` — files being written, and files garbage collection is
//!   removing (`gc-…`, put back on start if a crash left them there).
//!
//! A file's mtime is when it was last written: writing a blob whose chunks
//! or chunk list are already stored refreshes them instead of writing them
//! again, so garbage collection (`delete`, with its time bound) never takes
//! what a writer has just reused.
//!
//! Every file is written to `tmp/` then renamed into place, so a crash never
//! leaves a partial file visible. Durability is by group commit: a blob's
//! `close` returns only after a `syncfs` that started after its last write,
//! and concurrent closes share one `syncfs` (one fsync per file would cost
//! a journal commit per small file). Chunks are checked against their digest
//! on every read: a corrupted chunk is reported, never served.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::{
    bytes_reader, BlobReader, BlobService, BlobWriter, ChannelWriter, ChunkFetcher, ChunkMeta, ChunkedReader,
    RangeFetcher, StoredBlob,
};
use crate::digest::segments::{self, SEGMENT};
use crate::digest::B3Digest;
use blake3::hazmat::ChainingValue;

pub const CHUNK_MIN: u32 = 64 * 1024;
pub const CHUNK_AVG: u32 = 256 * 1024;
pub const CHUNK_MAX: u32 = 1024 * 1024;
/// Buffered bytes that trigger chunking (all but the last chunk are cut).
const CUT_TRIGGER: usize = 4 * CHUNK_MAX as usize;
const ZSTD_LEVEL: i32 = 1;
const INDEX_MAGIC: &[u8; 8] = b"snixidx1";
/// Ranges up to this long are read on the async worker (see `read_chunk_range`).
const INLINE_RANGE: u64 = 2 * SEGMENT as u64;
/// Chunks fetched ahead of the read position on sequential reads.
const READAHEAD: usize = 4;

#[derive(Clone)]
pub struct ObjectStoreFileBlobService {
    root: Arc<PathBuf>,
    syncer: Arc<GroupSync>,
}

/// Group commit of `syncfs` on the store's file system: each caller takes a
/// ticket after its writes; one `syncfs` started after ticket `t` was taken
/// covers every caller holding a ticket ≤ `t`.
struct GroupSync {
    root: File,
    issued: AtomicU64,
    done: tokio::sync::Mutex<u64>,
}

impl GroupSync {
    async fn sync(self: &Arc<Self>) -> io::Result<()> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.lock().await;
        if *done >= ticket {
            return Ok(());
        }
        // everyone who took a ticket so far has finished writing
        let covers = self.issued.load(Ordering::SeqCst);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            // SAFETY: syncfs on a file descriptor we own for our lifetime
            if unsafe { libc::syncfs(this.root.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)??;
        *done = covers;
        Ok(())
    }
}

fn shard(dir: &Path, digest: &B3Digest, suffix: &str) -> PathBuf {
    let hex = digest.to_hex();
    dir.join(&hex[..2]).join(format!("{hex}{suffix}"))
}

/// Marks an existing file as written now; `false` if it is not there (any
/// more), so the caller writes it.
///
/// Against a concurrent `delete` (which takes the file out of place, then
/// reads its mtime): if the delete read the mtime before this refresh, it
/// had already taken the file out, so the check that the file is still in
/// place, made after the refresh, fails.
fn touch(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    f.set_modified(SystemTime::now())?;
    let opened = f.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(now.ino() == opened.ino() && now.dev() == opened.dev()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The name a file being deleted has in `tmp/`: `gc-<hex>-chunk` / `gc-<hex>-list`.
fn trash_name(digest: &B3Digest, is_chunk: bool) -> String {
    format!("gc-{}-{}", digest.to_hex(), if is_chunk { "chunk" } else { "list" })
}

impl ObjectStoreFileBlobService {
    pub fn open(root: &Path) -> io::Result<Self> {
        for d in ["chunks", "blobs", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Self::restore_trash(root)?;
        let syncer = GroupSync { root: File::open(root)?, issued: AtomicU64::new(0), done: Default::default() };
        Ok(ObjectStoreFileBlobService { root: Arc::new(root.to_path_buf()), syncer: Arc::new(syncer) })
    }

    /// Puts back what a garbage collection killed halfway through left in
    /// `tmp/`: it was garbage, but whether a writer reused it meanwhile is
    /// unknown — the next collection decides again.
    fn restore_trash(root: &Path) -> io::Result<()> {
        for e in std::fs::read_dir(root.join("tmp"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("gc-") else { continue };
            let parsed =
                rest.split_once('-').and_then(|(hex, kind)| Some((hex.parse::<B3Digest>().ok()?, kind == "chunk")));
            let Some((digest, is_chunk)) = parsed else { continue };
            let dest = shard(&root.join(if is_chunk { "chunks" } else { "blobs" }), &digest, "");
            if dest.exists() {
                std::fs::remove_file(e.path())?;
            } else {
                std::fs::rename(e.path(), &dest)?;
            }
            tracing::info!(%digest, "put back a blob file an interrupted garbage collection had taken");
        }
        Ok(())
    }

    fn chunk_path(&self, digest: &B3Digest) -> PathBuf {
        shard(&self.root.join("chunks"), digest, "")
    }

    fn index_path(&self, digest: &B3Digest) -> PathBuf {
        shard(&self.root.join("blobs"), digest, "")
    }

    /// Writes `data` to `dest` atomically (tmp → rename); durable after the
    /// next [`GroupSync::sync`].
    fn write_atomic(root: &Path, dest: &Path, data: &[u8]) -> io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(root.join("tmp"))?;
        tmp.write_all(data)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        tmp.persist(dest).map_err(|e| e.error)?;
        Ok(())
    }

    fn store_chunk(root: &Path, data: &[u8]) -> io::Result<ChunkMeta> {
        // the segments' chaining values make the digest: one hashing pass
        let cvs = (data.len() > SEGMENT).then(|| segments::chaining_values(data));
        let digest = match &cvs {
            Some(cvs) => segments::root(cvs, data.len() as u64).expect("one value per segment"),
            None => B3Digest::of(data),
        };
        let path = shard(&root.join("chunks"), &digest, "");
        if !touch(&path)? {
            let encoded = match &cvs {
                Some(cvs) => encode_segmented(data, cvs)?,
                None => encode_chunk(data)?,
            };
            Self::write_atomic(root, &path, &encoded)?;
        }
        Ok(ChunkMeta { digest, size: data.len() as u64 })
    }

    /// Reads and verifies one chunk (blocking).
    fn read_chunk_blocking(path: &Path, digest: &B3Digest) -> io::Result<Option<Bytes>> {
        let stored = match std::fs::read(path) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let data = decode_chunk(stored)
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, format!("chunk {digest} is corrupt ({why})")))?;
        if B3Digest::of(&data) != *digest {
            tracing::error!(%digest, path = %path.display(), "chunk failed its hash check");
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("chunk {digest} is corrupt (hash mismatch)"),
            ));
        }
        Ok(Some(Bytes::from(data)))
    }

    /// Reads and verifies bytes `offset..offset + len` of one chunk
    /// (blocking; fewer at its end). A segmented chunk is read only where the
    /// range lies, and checked segment by segment against its digest; any
    /// other is read and checked whole.
    fn read_chunk_range_blocking(path: &Path, digest: &B3Digest, offset: u64, len: u64) -> io::Result<Option<Bytes>> {
        let corrupt =
            |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("chunk {digest} is corrupt ({why})"));
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // a chunk's header is at most 1 + 4 + 36 * 16 bytes
        let mut head = vec![0u8; 4096];
        let n = read_full_at(&file, &mut head, 0)?;
        head.truncate(n);
        if head.first() != Some(&b'S') {
            return Ok(Self::read_chunk_blocking(path, digest)?.map(|whole| super::slice_range(&whole, offset, len)));
        }
        let header = SegmentedHeader::parse(&head).map_err(|e| corrupt(e.to_string()))?;
        if segments::root(&header.cvs, header.len) != Some(*digest) {
            tracing::error!(%digest, path = %path.display(), "chunk's segment hashes do not make its digest");
            return Err(corrupt("segment hashes do not make its digest".into()));
        }
        let end = offset.saturating_add(len).min(header.len);
        if offset >= end {
            return Ok(Some(Bytes::new()));
        }
        let (first, last) = ((offset / SEGMENT as u64) as usize, ((end - 1) / SEGMENT as u64) as usize);
        let (from, to) = (header.body_offset(first), header.body_offset(last + 1));
        let mut stored = vec![0u8; to - from];
        if read_full_at(&file, &mut stored, from as u64)? != stored.len() {
            return Err(corrupt("shorter than its header says".into()));
        }
        let base = first as u64 * SEGMENT as u64;
        let mut data = vec![0u8; header.segment_len(last) as usize + (last - first) * SEGMENT];
        for i in first..=last {
            let piece = &stored[header.body_offset(i) - from..header.body_offset(i + 1) - from];
            let out = &mut data[(i - first) * SEGMENT..][..header.segment_len(i) as usize];
            decode_segment(header.compressed[i], piece, out).map_err(|e| corrupt(e.to_string()))?;
            if segments::chaining_value(i, out) != header.cvs[i] {
                tracing::error!(%digest, path = %path.display(), segment = i, "chunk segment failed its hash check");
                return Err(corrupt(format!("segment {i} hash mismatch")));
            }
        }
        let data = Bytes::from(data);
        Ok(Some(data.slice((offset - base) as usize..(end - base) as usize)))
    }

    async fn read_chunk_range(&self, digest: B3Digest, offset: u64, len: u64) -> io::Result<Option<Bytes>> {
        let path = self.chunk_path(&digest);
        // A small range (what a random read asks for) is read right here:
        // handing it to the blocking pool and back costs two thread
        // wake-ups, 70-80 µs of a ~250 µs round trip on a VM — more than
        // the read itself blocks this worker.
        if len <= INLINE_RANGE {
            return Self::read_chunk_range_blocking(&path, &digest, offset, len);
        }
        tokio::task::spawn_blocking(move || Self::read_chunk_range_blocking(&path, &digest, offset, len))
            .await
            .map_err(io::Error::other)?
    }

    async fn read_chunk(&self, digest: B3Digest) -> io::Result<Option<Bytes>> {
        let path = self.chunk_path(&digest);
        tokio::task::spawn_blocking(move || Self::read_chunk_blocking(&path, &digest))
            .await
            .map_err(io::Error::other)?
    }

    fn read_index_blocking(path: &Path, digest: &B3Digest) -> io::Result<Option<Vec<ChunkMeta>>> {
        let raw = match std::fs::read(path) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        decode_index(&raw).map(Some).ok_or_else(|| {
            tracing::error!(%digest, "blob index failed its check");
            io::Error::new(io::ErrorKind::InvalidData, format!("chunk list of blob {digest} is corrupt"))
        })
    }

    /// Finds a blob in one trip to the blocking pool (each trip costs two
    /// thread switches): its chunk list, or — stored whole — its single
    /// chunk, read and verified if `read` is set.
    async fn lookup(&self, digest: B3Digest, read: bool) -> io::Result<Option<Found>> {
        let (index, chunk) = (self.index_path(&digest), self.chunk_path(&digest));
        tokio::task::spawn_blocking(move || {
            if let Some(list) = Self::read_index_blocking(&index, &digest)? {
                return Ok(Some(Found::Chunked(list)));
            }
            if read {
                return Ok(Self::read_chunk_blocking(&chunk, &digest)?.map(Found::Whole));
            }
            Ok(chunk.try_exists()?.then_some(Found::Whole(Bytes::new())))
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Finishes a blob from its chunks (blocking): one chunk needs nothing
    /// more; several get an index, written last — the commit point.
    fn commit(root: &Path, digest: &B3Digest, chunks: &[ChunkMeta]) -> io::Result<()> {
        if chunks.len() > 1 {
            let path = shard(&root.join("blobs"), digest, "");
            if !touch(&path)? {
                Self::write_atomic(root, &path, &encode_index(chunks))?;
            }
        }
        Ok(())
    }
}

thread_local! {
    // a zstd context costs more to create than a small chunk costs to compress
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// `data` compressed, if that saves at least 1/8 of it.
fn compress(data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let compressed = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        c.as_mut().expect("set above").compress(data)
    })?;
    Ok((compressed.len() < data.len() - data.len() / 8).then_some(compressed))
}

/// A chunk of one segment or less as stored: `Z` + zstd frame, or `R` + raw bytes.
fn encode_chunk(data: &[u8]) -> io::Result<Vec<u8>> {
    let compressed = compress(data)?;
    let body = compressed.as_deref().unwrap_or(data);
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(if compressed.is_some() { b'Z' } else { b'R' });
    out.extend_from_slice(body);
    Ok(out)
}

/// In a segmented chunk's header: the segment's stored bytes are zstd.
const SEGMENT_COMPRESSED: u32 = 1 << 31;

/// A chunk longer than one segment as stored:
/// `S | length u32 | (stored length u32, top bit: zstd)* | chaining value 32* | segments`.
fn encode_segmented(data: &[u8], cvs: &[ChainingValue]) -> io::Result<Vec<u8>> {
    let bodies: Vec<Option<Vec<u8>>> = data.chunks(SEGMENT).map(compress).collect::<io::Result<_>>()?;
    let stored: usize =
        bodies.iter().zip(data.chunks(SEGMENT)).map(|(b, raw)| b.as_ref().map_or(raw.len(), Vec::len)).sum();
    let mut out = Vec::with_capacity(SegmentedHeader::size(cvs.len()) + stored);
    out.push(b'S');
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    for (body, raw) in bodies.iter().zip(data.chunks(SEGMENT)) {
        let entry = match body {
            Some(z) => z.len() as u32 | SEGMENT_COMPRESSED,
            None => raw.len() as u32,
        };
        out.extend_from_slice(&entry.to_le_bytes());
    }
    for cv in cvs {
        out.extend_from_slice(cv);
    }
    for (body, raw) in bodies.iter().zip(data.chunks(SEGMENT)) {
        out.extend_from_slice(body.as_deref().unwrap_or(raw));
    }
    Ok(out)
}

/// The header of a segmented chunk, parsed.
struct SegmentedHeader {
    len: u64,
    compressed: Vec<bool>,
    /// where each segment's stored bytes start in the file, and where the last ends
    offsets: Vec<usize>,
    cvs: Vec<ChainingValue>,
}

impl SegmentedHeader {
    fn size(segments: usize) -> usize {
        1 + 4 + 36 * segments
    }

    /// Parses the header at the start of `raw` (which may hold more).
    fn parse(raw: &[u8]) -> Result<SegmentedHeader, ChunkDecodeError> {
        let len = raw.get(1..5).ok_or(ChunkDecodeError::Header)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as u64;
        if len <= SEGMENT as u64 || len > CHUNK_MAX as u64 {
            return Err(ChunkDecodeError::Header);
        }
        let n = segments::count(len);
        let header_len = Self::size(n);
        let header = raw.get(..header_len).ok_or(ChunkDecodeError::Header)?;
        let (entries, cvs) = header[5..].split_at(4 * n);
        let mut offsets = Vec::with_capacity(n + 1);
        let mut compressed = Vec::with_capacity(n);
        let mut at = header_len;
        for e in entries.chunks_exact(4) {
            let e = u32::from_le_bytes(e.try_into().expect("4 bytes"));
            offsets.push(at);
            compressed.push(e & SEGMENT_COMPRESSED != 0);
            at += (e & !SEGMENT_COMPRESSED) as usize;
        }
        offsets.push(at);
        let cvs = cvs.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
        Ok(SegmentedHeader { len, compressed, offsets, cvs })
    }

    fn body_offset(&self, segment: usize) -> usize {
        self.offsets[segment]
    }

    fn segment_len(&self, segment: usize) -> u64 {
        (self.len - segment as u64 * SEGMENT as u64).min(SEGMENT as u64)
    }
}

/// Reads from `offset` until `buf` is full or the file ends; how much it read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// One segment's stored bytes into `out`, which has its exact length.
fn decode_segment(compressed: bool, stored: &[u8], out: &mut [u8]) -> Result<(), ChunkDecodeError> {
    if !compressed {
        if stored.len() != out.len() {
            return Err(ChunkDecodeError::Header);
        }
        out.copy_from_slice(stored);
        return Ok(());
    }
    let n = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(ChunkDecodeError::Zstd)?);
        }
        d.as_mut().expect("set above").decompress_to_buffer(stored, &mut *out).map_err(ChunkDecodeError::Zstd)
    })?;
    if n != out.len() {
        return Err(ChunkDecodeError::FrameHeader);
    }
    Ok(())
}

/// Why a stored chunk file does not decode.
#[derive(Debug, thiserror::Error)]
enum ChunkDecodeError {
    #[error("bad zstd frame header")]
    FrameHeader,
    #[error("zstd: {0}")]
    Zstd(io::Error),
    #[error("unknown chunk encoding")]
    Encoding,
    #[error("bad segment table")]
    Header,
}

fn decode_chunk(mut stored: Vec<u8>) -> Result<Vec<u8>, ChunkDecodeError> {
    match stored.first() {
        Some(b'R') => {
            stored.remove(0);
            Ok(stored)
        }
        Some(b'Z') => {
            let frame = &stored[1..];
            let size = match zstd::zstd_safe::get_frame_content_size(frame) {
                Ok(Some(n)) if n <= CHUNK_MAX as u64 => n as usize,
                _ => return Err(ChunkDecodeError::FrameHeader),
            };
            DECOMPRESSOR.with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new().map_err(ChunkDecodeError::Zstd)?);
                }
                d.as_mut().expect("set above").decompress(frame, size).map_err(ChunkDecodeError::Zstd)
            })
        }
        Some(b'S') => {
            let header = SegmentedHeader::parse(&stored)?;
            if header.body_offset(header.cvs.len()) != stored.len() {
                return Err(ChunkDecodeError::Header);
            }
            let mut data = vec![0u8; header.len as usize];
            for (i, out) in data.chunks_mut(SEGMENT).enumerate() {
                let piece = &stored[header.body_offset(i)..header.body_offset(i + 1)];
                decode_segment(header.compressed[i], piece, out)?;
            }
            Ok(data)
        }
        _ => Err(ChunkDecodeError::Encoding),
    }
}

enum Found {
    Chunked(Vec<ChunkMeta>),
    Whole(Bytes),
}

/// `magic | count u64 | (digest 32, size u64)* | blake3(all before) 32`
fn encode_index(chunks: &[ChunkMeta]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + chunks.len() * 40 + 32);
    v.extend_from_slice(INDEX_MAGIC);
    v.extend_from_slice(&(chunks.len() as u64).to_le_bytes());
    for c in chunks {
        v.extend_from_slice(c.digest.as_bytes());
        v.extend_from_slice(&c.size.to_le_bytes());
    }
    let check = blake3::hash(&v);
    v.extend_from_slice(check.as_bytes());
    v
}

fn decode_index(raw: &[u8]) -> Option<Vec<ChunkMeta>> {
    if raw.len() < 48 || &raw[..8] != INDEX_MAGIC {
        return None;
    }
    let (body, check) = raw.split_at(raw.len() - 32);
    if blake3::hash(body).as_bytes() != check {
        return None;
    }
    let count = u64::from_le_bytes(body[8..16].try_into().ok()?) as usize;
    let entries = &body[16..];
    if entries.len() != count.checked_mul(40)? {
        return None;
    }
    Some(
        entries
            .chunks_exact(40)
            .map(|e| ChunkMeta {
                digest: B3Digest::try_from(&e[..32]).expect("32 bytes"),
                size: u64::from_le_bytes(e[32..].try_into().expect("8 bytes")),
            })
            .collect(),
    )
}

/// Cuts `buf` into chunks and stores them; keeps the last (possibly
/// incomplete) chunk in `buf` unless `last`.
fn cut_and_store(root: &Path, buf: &mut Vec<u8>, chunks: &mut Vec<ChunkMeta>, last: bool) -> io::Result<()> {
    let cuts: Vec<(usize, usize)> =
        fastcdc::v2020::FastCDC::new(buf, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX).map(|c| (c.offset, c.length)).collect();
    // the last cut of a partial buffer may end only because the buffer does
    let n = if last { cuts.len() } else { cuts.len().saturating_sub(1) };
    for &(off, len) in &cuts[..n] {
        chunks.push(ObjectStoreFileBlobService::store_chunk(root, &buf[off..off + len])?);
    }
    let consumed = cuts[..n].last().map(|(o, l)| o + l).unwrap_or(0);
    buf.drain(..consumed);
    Ok(())
}

#[async_trait::async_trait]
impl BlobService for ObjectStoreFileBlobService {
    async fn has(&self, digest: &B3Digest) -> io::Result<bool> {
        Ok(self.lookup(*digest, false).await?.is_some())
    }

    async fn chunks(&self, digest: &B3Digest) -> io::Result<Option<Vec<ChunkMeta>>> {
        Ok(self.lookup(*digest, false).await?.map(|f| match f {
            Found::Chunked(list) => list,
            Found::Whole(_) => Vec::new(),
        }))
    }

    async fn open_read(&self, digest: &B3Digest) -> io::Result<Option<Box<dyn BlobReader>>> {
        let list = match self.lookup(*digest, true).await? {
            None => return Ok(None),
            Some(Found::Whole(data)) => return Ok(Some(bytes_reader(data))),
            Some(Found::Chunked(list)) => list,
        };
        {
            let this = self.clone();
            let fetch: ChunkFetcher = Arc::new(move |d| {
                let this = this.clone();
                async move {
                    this.read_chunk(d)
                        .await?
                        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("chunk {d} is missing")))
                }
                .boxed()
            });
            let this = self.clone();
            let fetch_range: RangeFetcher = Arc::new(move |d, offset, len| {
                let this = this.clone();
                async move {
                    this.read_chunk_range(d, offset, len)
                        .await?
                        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("chunk {d} is missing")))
                }
                .boxed()
            });
            Ok(Some(Box::new(ChunkedReader::new(list, fetch, READAHEAD).with_range_fetch(fetch_range))))
        }
    }

    async fn read_range(&self, digest: &B3Digest, offset: u64, len: u64) -> io::Result<Option<Bytes>> {
        // a chunk (what a chunked reader asks for) is read where the range
        // lies; a blob of several chunks through its reader
        if let Some(data) = self.read_chunk_range(*digest, offset, len).await? {
            return Ok(Some(data));
        }
        super::read_range_via_reader(self, digest, offset, len).await
    }

    async fn read_unchunked(&self, digest: &B3Digest) -> io::Result<Option<Bytes>> {
        Ok(match self.lookup(*digest, true).await? {
            Some(Found::Whole(data)) => Some(data),
            Some(Found::Chunked(_)) | None => None,
        })
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        let root = self.root.clone();
        let syncer = self.syncer.clone();
        Box::new(ChannelWriter::spawn(4, move |mut rx| async move {
            let digest = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                let mut chunks = Vec::new();
                let mut hasher = blake3::Hasher::new();
                loop {
                    match rx.blocking_recv() {
                        Some(b) if b.is_empty() => break,
                        Some(b) => {
                            hasher.update(&b);
                            buf.extend_from_slice(&b);
                            if buf.len() >= CUT_TRIGGER {
                                cut_and_store(&root, &mut buf, &mut chunks, false)?;
                            }
                        }
                        None => {
                            return Err(io::Error::new(io::ErrorKind::Interrupted, "blob writer dropped before close"))
                        }
                    }
                }
                cut_and_store(&root, &mut buf, &mut chunks, true)?;
                if chunks.is_empty() {
                    // the empty blob is one empty chunk
                    chunks.push(ObjectStoreFileBlobService::store_chunk(&root, &[])?);
                }
                let digest = B3Digest::from(hasher.finalize());
                ObjectStoreFileBlobService::commit(&root, &digest, &chunks)?;
                Ok::<_, io::Error>(digest)
            })
            .await
            .map_err(io::Error::other)??;
            syncer.sync().await?;
            Ok(digest)
        }))
    }

    fn list(&self) -> BoxStream<'static, io::Result<StoredBlob>> {
        let root = self.root.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            let send = |r| tx.blocking_send(r).is_ok();
            for (dir, is_chunk) in [("chunks", true), ("blobs", false)] {
                let shards = match std::fs::read_dir(root.join(dir)) {
                    Ok(s) => s,
                    Err(e) => {
                        send(Err(e));
                        return;
                    }
                };
                for shard in shards {
                    let entries = match shard.and_then(|s| std::fs::read_dir(s.path())) {
                        Ok(e) => e,
                        Err(e) => {
                            send(Err(e));
                            return;
                        }
                    };
                    for e in entries {
                        let stored = e.and_then(|e| {
                            let digest = e.file_name().to_string_lossy().parse::<B3Digest>().map_err(|err| {
                                io::Error::new(io::ErrorKind::InvalidData, format!("{}: {err}", e.path().display()))
                            })?;
                            let meta = e.metadata()?;
                            Ok(StoredBlob { digest, written: meta.modified()?, stored_size: meta.len(), is_chunk })
                        });
                        match stored {
                            // gone since the directory was read: a concurrent delete
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            r => {
                                if !send(r) {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }

    async fn delete(&self, digest: &B3Digest, unless_written_since: SystemTime) -> io::Result<Option<u64>> {
        let root = self.root.clone();
        let digest = *digest;
        tokio::task::spawn_blocking(move || {
            for (dir, is_chunk) in [("blobs", false), ("chunks", true)] {
                let path = shard(&root.join(dir), &digest, "");
                let trash = root.join("tmp").join(trash_name(&digest, is_chunk));
                // taken out of place first: a writer that reuses it from now
                // on finds it gone and writes it again
                match std::fs::rename(&path, &trash) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    r => r?,
                }
                let meta = std::fs::metadata(&trash)?;
                if meta.modified()? >= unless_written_since {
                    // reused before it was taken out: put it back
                    std::fs::rename(&trash, &path)?;
                    return Ok(None);
                }
                std::fs::remove_file(&trash)?;
                return Ok(Some(meta.len()));
            }
            Ok(None)
        })
        .await
        .map_err(io::Error::other)?
    }
}
