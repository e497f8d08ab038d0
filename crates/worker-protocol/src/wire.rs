//! The worker protocol's primitives: u64 little-endian integers, byte
//! strings padded to 8 bytes, lists, store paths, framed streams.
//!
//! Readers are generic over `AsyncRead` and writers build byte vectors, so
//! everything here is tested on byte slices; no socket is involved.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use nix_compat::store_path::StorePath;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Longest string accepted in a request (store paths, names, options,
/// signatures; file contents travel in streams instead).
pub const MAX_STRING: u64 = 64 * 1024 * 1024;
/// Most elements accepted in one list or map.
pub const MAX_COUNT: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(io::Error),
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            WireError::Truncated
        } else {
            WireError::Io(e)
        }
    }
}

pub type Result<T> = std::result::Result<T, WireError>;

pub async fn read_u64<R: AsyncRead + Unpin>(r: &mut R) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).await?;
    Ok(u64::from_le_bytes(b))
}

/// An integer Nix reads as `unsigned int`: at most 2^32-1.
pub async fn read_int<R: AsyncRead + Unpin>(r: &mut R) -> Result<u64> {
    let v = read_u64(r).await?;
    if v > u32::MAX as u64 {
        return Err(WireError::Invalid(format!("integer {v} out of range")));
    }
    Ok(v)
}

pub async fn read_bool<R: AsyncRead + Unpin>(r: &mut R) -> Result<bool> {
    Ok(read_u64(r).await? != 0)
}

fn padding(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

/// A byte string of at most `max` bytes.
pub async fn read_bytes_max<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> Result<Vec<u8>> {
    let len = read_u64(r).await?;
    if len > max {
        return Err(WireError::Invalid(format!("string of {len} bytes is longer than the {max} allowed")));
    }
    let mut v = vec![0u8; len as usize];
    r.read_exact(&mut v).await?;
    let mut pad = [0u8; 8];
    let p = padding(len);
    r.read_exact(&mut pad[..p]).await?;
    if pad[..p].iter().any(|&b| b != 0) {
        return Err(WireError::Invalid("non-zero string padding".into()));
    }
    Ok(v)
}

pub async fn read_bytes<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>> {
    read_bytes_max(r, MAX_STRING).await
}

pub async fn read_string<R: AsyncRead + Unpin>(r: &mut R) -> Result<String> {
    String::from_utf8(read_bytes(r).await?).map_err(|_| WireError::Invalid("string is not UTF-8".into()))
}

async fn read_count<R: AsyncRead + Unpin>(r: &mut R) -> Result<u64> {
    let n = read_u64(r).await?;
    if n > MAX_COUNT {
        return Err(WireError::Invalid(format!("list of {n} elements is longer than the {MAX_COUNT} allowed")));
    }
    Ok(n)
}

pub async fn read_strings<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<String>> {
    let n = read_count(r).await?;
    let mut v = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        v.push(read_string(r).await?);
    }
    Ok(v)
}

pub async fn read_string_pairs<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<(String, String)>> {
    let n = read_count(r).await?;
    let mut v = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        v.push((read_string(r).await?, read_string(r).await?));
    }
    Ok(v)
}

pub fn parse_path(s: &str) -> Result<StorePath> {
    StorePath::from_absolute_path(s.as_bytes())
        .map_err(|e| WireError::Invalid(format!("invalid store path {s:?}: {e}")))
}

pub async fn read_path<R: AsyncRead + Unpin>(r: &mut R) -> Result<StorePath> {
    parse_path(&read_string(r).await?)
}

/// A store path or the empty string.
pub async fn read_opt_path<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<StorePath>> {
    let s = read_string(r).await?;
    if s.is_empty() {
        Ok(None)
    } else {
        parse_path(&s).map(Some)
    }
}

pub async fn read_paths<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<StorePath>> {
    let n = read_count(r).await?;
    let mut v = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        v.push(read_path(r).await?);
    }
    Ok(v)
}

/// Builds outgoing messages.
#[derive(Default, Debug, Clone)]
pub struct WireWriter {
    pub buf: Vec<u8>,
}

impl WireWriter {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u64(v as u64)
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
        self.buf.extend_from_slice(&[0u8; 8][..padding(b.len() as u64)]);
        self
    }
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    pub fn strings<S: AsRef<str>>(&mut self, v: impl IntoIterator<Item = S, IntoIter: ExactSizeIterator>) -> &mut Self {
        let it = v.into_iter();
        self.u64(it.len() as u64);
        for s in it {
            self.string(s.as_ref());
        }
        self
    }
    pub fn path(&mut self, p: &StorePath) -> &mut Self {
        self.string(&p.to_absolute_path())
    }
    pub fn opt_path(&mut self, p: Option<&StorePath>) -> &mut Self {
        match p {
            Some(p) => self.path(p),
            None => self.string(""),
        }
    }
    /// A path set: sorted, as Nix's `std::set` sends it.
    pub fn paths<'a>(&mut self, v: impl IntoIterator<Item = &'a StorePath>) -> &mut Self {
        let mut v: Vec<String> = v.into_iter().map(|p| p.to_absolute_path()).collect();
        v.sort();
        v.dedup();
        self.strings(v)
    }
}

/// Reads a framed stream (protocol ≥1.23): frames of u64 length and that
/// many bytes, no padding, ended by an empty frame. Reads never go past
/// the end marker, so the connection stays in step.
pub struct FramedReader<R> {
    inner: R,
    /// bytes left in the current frame
    left: u64,
    /// partial length header
    header: [u8; 8],
    header_len: usize,
    done: bool,
}

impl<R: AsyncRead + Unpin> FramedReader<R> {
    pub fn new(inner: R) -> Self {
        FramedReader { inner, left: 0, header: [0; 8], header_len: 0, done: false }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Reads and discards what is left of the stream, through its end.
    pub async fn drain(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.read(&mut buf).await? != 0 {}
        Ok(())
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for FramedReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.done || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.left == 0 {
                // read the next frame's length
                while this.header_len < 8 {
                    let mut hb = ReadBuf::new(&mut this.header[this.header_len..]);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut hb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {
                            let n = hb.filled().len();
                            if n == 0 {
                                return Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "connection closed inside a framed stream",
                                )));
                            }
                            this.header_len += n;
                        }
                    }
                }
                this.header_len = 0;
                this.left = u64::from_le_bytes(this.header);
                if this.left == 0 {
                    this.done = true;
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let want = (this.left.min(buf.remaining() as u64)) as usize;
            let mut sub = ReadBuf::new(buf.initialize_unfilled_to(want));
            match Pin::new(&mut this.inner).poll_read(cx, &mut sub) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = sub.filled().len();
                    if n == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed inside a frame",
                        )));
                    }
                    buf.advance(n);
                    this.left -= n as u64;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// Splits `data` into a framed stream (for tests and clients).
pub fn frame(data: &[u8], frame_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(frame_size.max(1)) {
        out.extend_from_slice(&(c.len() as u64).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&0u64.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn framed_reader_stops_at_the_end_marker() {
        let mut input = frame(b"hello world, framed", 4);
        input.extend_from_slice(b"NEXT");
        let mut r = FramedReader::new(&input[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello world, framed");
        let mut rest = Vec::new();
        r.into_inner().read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"NEXT");
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let input = frame(b"abcdefgh", 8);
        for cut in 0..input.len() {
            let mut r = FramedReader::new(&input[..cut]);
            let mut out = Vec::new();
            assert!(r.read_to_end(&mut out).await.is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn strings_check_length_and_padding() {
        let mut w = WireWriter::new();
        w.string("hi");
        assert_eq!(w.buf, b"\x02\0\0\0\0\0\0\0hi\0\0\0\0\0\0");
        assert_eq!(read_string(&mut &w.buf[..]).await.unwrap(), "hi");
        let mut bad = w.buf.clone();
        bad[15] = 1;
        assert!(matches!(read_string(&mut &bad[..]).await, Err(WireError::Invalid(_))));
        // longer than the remaining input
        assert!(matches!(read_string(&mut &w.buf[..12]).await, Err(WireError::Truncated)));
        // absurd length
        let huge = (1u64 << 60).to_le_bytes();
        assert!(matches!(read_string(&mut &huge[..]).await, Err(WireError::Invalid(_))));
    }
}
