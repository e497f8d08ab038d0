//! Streaming NAR readers over `std::io::BufRead` and tokio's `AsyncBufRead`.
//!
//! The readers consume exactly the bytes of the NAR from the underlying
//! reader — nothing past its end — so a NAR can be read off a connection
//! that carries more data after it.

use std::io::{BufRead, Read};
use std::path::Path;

use thiserror::Error;

use super::{NarDecoder, NarError, NarEvent};

#[derive(Debug, Error)]
pub enum NarReadError {
    #[error("malformed NAR: {0}")]
    Nar(#[from] NarError),
    #[error("reading NAR: {0}")]
    Io(#[from] std::io::Error),
}

impl NarReadError {
    /// The NAR-format error, if the input was malformed (not an I/O failure).
    pub fn as_nar(&self) -> Option<&NarError> {
        match self {
            NarReadError::Nar(e) => Some(e),
            NarReadError::Io(_) => None,
        }
    }
}

/// An event located in the buffer, so it can be returned after the loop
/// that found it has released its borrow.
enum Located {
    Contents { start: usize, end: usize },
    Other(NarEvent<'static>),
}

fn locate(buf: &[u8], consumed: usize, ev: NarEvent<'_>) -> Located {
    match ev {
        NarEvent::Contents(d) => {
            let start = d.as_ptr() as usize - buf.as_ptr() as usize;
            debug_assert_eq!(start + d.len(), consumed);
            Located::Contents { start, end: start + d.len() }
        }
        NarEvent::File { executable, size } => Located::Other(NarEvent::File { executable, size }),
        NarEvent::Symlink { target } => Located::Other(NarEvent::Symlink { target }),
        NarEvent::DirectoryStart => Located::Other(NarEvent::DirectoryStart),
        NarEvent::Entry { name } => Located::Other(NarEvent::Entry { name }),
        NarEvent::DirectoryEnd => Located::Other(NarEvent::DirectoryEnd),
        NarEvent::End => Located::Other(NarEvent::End),
    }
}

/// Pulls [`NarEvent`]s from a `BufRead`. Contents are slices of the reader's
/// buffer, valid until the next call.
pub struct NarReader<R> {
    inner: R,
    dec: NarDecoder,
    /// bytes of the last returned Contents event, consumed on the next call
    pending: usize,
    ended: bool,
}

impl<R: BufRead> NarReader<R> {
    pub fn new(inner: R) -> Self {
        NarReader { inner, dec: NarDecoder::new(), pending: 0, ended: false }
    }

    /// The next event; `None` after `End` has been returned.
    // not `Iterator::next`: each event borrows the reader (a lending iterator)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<NarEvent<'_>>, NarReadError> {
        self.inner.consume(std::mem::take(&mut self.pending));
        if self.ended {
            return Ok(None);
        }
        let located = loop {
            if !self.dec.needs_input() {
                if let (_, Some(ev)) = self.dec.decode(&[])? {
                    break locate(&[], 0, ev);
                }
            }
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() && !self.dec.is_done() {
                self.dec.finish()?;
            }
            let (n, ev) = self.dec.decode(buf)?;
            match ev {
                None => self.inner.consume(n),
                Some(ev) => {
                    let l = locate(buf, n, ev);
                    if let Located::Contents { .. } = l {
                        self.pending = n;
                    } else {
                        self.inner.consume(n);
                    }
                    break l;
                }
            }
        };
        Ok(Some(match located {
            // not consumed yet, so fill_buf returns the same bytes without I/O
            Located::Contents { start, end } => NarEvent::Contents(&self.inner.fill_buf()?[start..end]),
            Located::Other(ev) => {
                self.ended = ev == NarEvent::End;
                ev
            }
        }))
    }

    /// Reads the whole NAR, checking it, and then that the input ends there.
    /// Returns the NAR's size in bytes.
    pub fn validate_to_eof(mut self) -> Result<u64, NarReadError> {
        while self.next()?.is_some() {}
        if !self.inner.fill_buf()?.is_empty() {
            return Err(NarError::TrailingData { offset: self.dec.offset() }.into());
        }
        Ok(self.dec.offset())
    }

    /// Bytes of NAR consumed so far.
    pub fn offset(&self) -> u64 {
        self.dec.offset()
    }

    pub fn into_inner(mut self) -> R {
        self.inner.consume(self.pending);
        self.inner
    }
}

/// Unpacks a NAR into a new file system tree at `dest` (which must not exist),
/// as `nix-store --restore` does.
pub fn restore<R: BufRead>(nar: R, dest: &Path) -> Result<(), NarReadError> {
    use std::ffi::OsStr;
    use std::fs;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;

    fn end_node(path: &mut std::path::PathBuf, dest: &Path) {
        if path.as_path() != dest {
            path.pop();
        }
    }
    fn finish_file(f: fs::File, executable: bool) -> std::io::Result<()> {
        if executable {
            f.set_permissions(fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }

    let mut reader = NarReader::new(nar);
    let mut path = dest.to_path_buf();
    let mut file: Option<(fs::File, bool)> = None;
    while let Some(ev) = reader.next()? {
        match ev {
            NarEvent::Entry { name } => path.push(OsStr::from_bytes(&name)),
            NarEvent::File { executable, size } => {
                let f = fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
                if size == 0 {
                    finish_file(f, executable)?;
                    end_node(&mut path, dest);
                } else {
                    file = Some((f, executable));
                }
            }
            NarEvent::Contents(data) => {
                let (f, _) = file.as_mut().expect("decoder emits Contents only inside a file");
                f.write_all(data)?;
                if reader.contents_remaining() == Some(0) {
                    let (f, executable) = file.take().expect("inside a file");
                    finish_file(f, executable)?;
                    end_node(&mut path, dest);
                }
            }
            NarEvent::Symlink { target } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)?;
                end_node(&mut path, dest);
            }
            NarEvent::DirectoryStart => fs::create_dir(&path)?,
            NarEvent::DirectoryEnd => end_node(&mut path, dest),
            NarEvent::End => {}
        }
    }
    Ok(())
}

/// Reads a NAR until its end and returns its size, checking it strictly;
/// bytes after the NAR are left unread.
pub fn skip<R: BufRead>(nar: &mut R) -> Result<u64, NarReadError> {
    let mut reader = NarReader::new(nar);
    while reader.next()?.is_some() {}
    Ok(reader.offset())
}

/// Copies exactly one NAR from `src` to `dst`, validating it on the way.
pub fn copy_nar<R: BufRead, W: std::io::Write>(src: &mut R, dst: &mut W) -> Result<u64, NarReadError> {
    let mut dec = NarDecoder::new();
    loop {
        if !dec.needs_input() {
            dec.decode(&[])?; // the End a root directory owes
            return Ok(dec.offset());
        }
        let buf = src.fill_buf()?;
        if buf.is_empty() && !dec.is_done() {
            dec.finish()?;
        }
        let (n, ev) = dec.decode(buf)?;
        let ended = ev == Some(NarEvent::End);
        dst.write_all(&buf[..n])?;
        src.consume(n);
        if ended {
            return Ok(dec.offset());
        }
    }
}

/// Reads all of `r` as a NAR, strictly, and returns its size.
pub fn validate<R: Read>(r: R) -> Result<u64, NarReadError> {
    NarReader::new(std::io::BufReader::with_capacity(256 * 1024, r)).validate_to_eof()
}

#[cfg(feature = "async")]
pub use self::async_reader::{async_copy_nar, AsyncNarReader};

#[cfg(feature = "async")]
mod async_reader {
    use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

    use super::{locate, Located, NarDecoder, NarEvent, NarReadError};

    /// The tokio twin of [`copy_nar`](super::copy_nar): copies exactly one
    /// NAR from `src` to `dst`, validating it on the way; bytes after it
    /// are left unread. Returns its size.
    pub async fn async_copy_nar<R, W>(src: &mut R, dst: &mut W) -> Result<u64, NarReadError>
    where
        R: AsyncBufRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut dec = NarDecoder::new();
        loop {
            if !dec.needs_input() {
                dec.decode(&[])?; // the End a root directory owes
                dst.flush().await?;
                return Ok(dec.offset());
            }
            let buf = src.fill_buf().await?;
            if buf.is_empty() && !dec.is_done() {
                dec.finish()?;
            }
            let (n, ev) = dec.decode(buf)?;
            let ended = ev == Some(NarEvent::End);
            dst.write_all(&buf[..n]).await?;
            src.consume(n);
            if ended {
                dst.flush().await?;
                return Ok(dec.offset());
            }
        }
    }

    /// The tokio twin of [`NarReader`](super::NarReader).
    pub struct AsyncNarReader<R> {
        inner: R,
        dec: NarDecoder,
        pending: usize,
        ended: bool,
    }

    impl<R: AsyncBufRead + Unpin> AsyncNarReader<R> {
        pub fn new(inner: R) -> Self {
            AsyncNarReader { inner, dec: NarDecoder::new(), pending: 0, ended: false }
        }

        /// The next event; `None` after `End` has been returned.
        pub async fn next(&mut self) -> Result<Option<NarEvent<'_>>, NarReadError> {
            std::pin::Pin::new(&mut self.inner).consume(std::mem::take(&mut self.pending));
            if self.ended {
                return Ok(None);
            }
            let located = loop {
                if !self.dec.needs_input() {
                    if let (_, Some(ev)) = self.dec.decode(&[])? {
                        break locate(&[], 0, ev);
                    }
                }
                let buf = self.inner.fill_buf().await?;
                if buf.is_empty() && !self.dec.is_done() {
                    self.dec.finish()?;
                }
                let (n, ev) = self.dec.decode(buf)?;
                match ev {
                    None => std::pin::Pin::new(&mut self.inner).consume(n),
                    Some(ev) => {
                        let l = locate(buf, n, ev);
                        if let Located::Contents { .. } = l {
                            self.pending = n;
                        } else {
                            std::pin::Pin::new(&mut self.inner).consume(n);
                        }
                        break l;
                    }
                }
            };
            Ok(Some(match located {
                Located::Contents { start, end } => NarEvent::Contents(&self.inner.fill_buf().await?[start..end]),
                Located::Other(ev) => {
                    self.ended = ev == NarEvent::End;
                    ev
                }
            }))
        }

        /// Bytes of file contents still to come for the current file.
        pub fn contents_remaining(&self) -> Option<u64> {
            self.dec.contents_remaining()
        }

        pub fn offset(&self) -> u64 {
            self.dec.offset()
        }

        pub fn into_inner(mut self) -> R {
            std::pin::Pin::new(&mut self.inner).consume(self.pending);
            self.inner
        }
    }
}

impl<R> NarReader<R> {
    /// Bytes of file contents still to come for the current file.
    pub fn contents_remaining(&self) -> Option<u64> {
        self.dec.contents_remaining()
    }
}
