//! Streaming NAR writers over `std::io::Write` and tokio's `AsyncWrite`, and
//! NAR serialisation of a file system tree (`nix-store --dump`).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{NarEncoder, NarEvent, NarWriteError};
use crate::hash::{HashAlgo, Hasher, NixHash};

/// Size of the buffer file contents are copied through.
pub const COPY_BUF: usize = 256 * 1024;

/// Writes NAR events to a `Write`, refusing any sequence that is not a NAR.
pub struct NarWriter<W> {
    w: W,
    enc: NarEncoder,
    out: Vec<u8>,
}

impl<W: Write> NarWriter<W> {
    pub fn new(w: W) -> Self {
        NarWriter { w, enc: NarEncoder::new(), out: Vec::with_capacity(COPY_BUF + 512) }
    }

    pub fn event(&mut self, ev: &NarEvent<'_>) -> Result<(), NarWriteError> {
        self.out.clear();
        self.enc.encode(ev, &mut self.out)?;
        self.w.write_all(&self.out)?;
        Ok(())
    }

    /// Writes a regular file of exactly `size` bytes read from `r`.
    pub fn file_from_reader(&mut self, executable: bool, size: u64, r: &mut impl Read) -> Result<(), NarWriteError> {
        self.event(&NarEvent::File { executable, size })?;
        let mut buf = vec![0u8; COPY_BUF.min(size as usize)];
        let mut left = size;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(NarWriteError::ContentsTooShort { size, got: size - left });
            }
            self.event(&NarEvent::Contents(&buf[..n]))?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Checks the NAR is complete, flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<W, NarWriteError> {
        self.enc.finish()?;
        self.w.flush()?;
        Ok(self.w)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NarWriteError + '_ {
    move |source| NarWriteError::Io { path: path.display().to_string(), source }
}

/// Serialises the tree at `path` as a NAR into `w`, as `nix-store --dump` does:
/// entries in bytewise name order, executable = owner-execute bit.
pub fn write_path<W: Write>(path: &Path, w: W) -> Result<W, NarWriteError> {
    let mut nw = NarWriter::new(w);
    let mut buf = vec![0u8; COPY_BUF];
    dump_node(&mut nw, path, &mut buf)?;
    nw.finish()
}

fn dump_node<W: Write>(nw: &mut NarWriter<W>, path: &Path, buf: &mut [u8]) -> Result<(), NarWriteError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err(path))?;
        nw.event(&NarEvent::Symlink { target: target.as_os_str().as_bytes().to_vec() })
    } else if ft.is_file() {
        // size and mode from the lstat above, as Nix does; a file that shrinks
        // meanwhile is an error below, one that grows is cut at this size
        let mut f = fs::File::open(path).map_err(io_err(path))?;
        let size = meta.len();
        let executable = meta.permissions().mode() & 0o100 != 0;
        nw.event(&NarEvent::File { executable, size })?;
        let mut left = size;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = f.read(&mut buf[..want]).map_err(io_err(path))?;
            if n == 0 {
                return Err(NarWriteError::FileChanged {
                    path: path.display().to_string(),
                    expected: size,
                    got: size - left,
                });
            }
            nw.event(&NarEvent::Contents(&buf[..n]))?;
            left -= n as u64;
        }
        Ok(())
    } else if ft.is_dir() {
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(path)
            .map_err(io_err(path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(path))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        nw.event(&NarEvent::DirectoryStart)?;
        for name in names {
            nw.event(&NarEvent::Entry { name: name.as_bytes().to_vec() })?;
            dump_node(nw, &path.join(&name), buf)?;
        }
        nw.event(&NarEvent::DirectoryEnd)
    } else {
        Err(NarWriteError::UnsupportedFileType { path: path.display().to_string() })
    }
}

/// A `Write` that hashes and counts what passes through it.
pub struct HashingWriter {
    hasher: Hasher,
    len: u64,
}

impl HashingWriter {
    pub fn new(algo: HashAlgo) -> Self {
        HashingWriter { hasher: Hasher::new(algo), len: 0 }
    }
    pub fn finish(self) -> (NixHash, u64) {
        (self.hasher.finish(), self.len)
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The NAR sha256 and NAR size of the tree at `path` (`nix hash path`).
pub fn nar_hash_path(path: &Path) -> Result<(NixHash, u64), NarWriteError> {
    Ok(write_path(path, HashingWriter::new(HashAlgo::Sha256))?.finish())
}

#[cfg(feature = "async")]
pub use self::async_writer::AsyncNarWriter;

#[cfg(feature = "async")]
mod async_writer {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{NarEncoder, NarEvent, NarWriteError, COPY_BUF};

    /// The tokio twin of [`NarWriter`](super::NarWriter).
    pub struct AsyncNarWriter<W> {
        w: W,
        enc: NarEncoder,
        out: Vec<u8>,
    }

    impl<W: AsyncWrite + Unpin> AsyncNarWriter<W> {
        pub fn new(w: W) -> Self {
            AsyncNarWriter { w, enc: NarEncoder::new(), out: Vec::with_capacity(COPY_BUF + 512) }
        }

        pub async fn event(&mut self, ev: &NarEvent<'_>) -> Result<(), NarWriteError> {
            self.out.clear();
            self.enc.encode(ev, &mut self.out)?;
            self.w.write_all(&self.out).await?;
            Ok(())
        }

        /// Writes a regular file of exactly `size` bytes read from `r`.
        pub async fn file_from_reader<R: AsyncRead + Unpin>(
            &mut self,
            executable: bool,
            size: u64,
            r: &mut R,
        ) -> Result<(), NarWriteError> {
            self.event(&NarEvent::File { executable, size }).await?;
            let mut buf = vec![0u8; COPY_BUF.min(size as usize)];
            let mut left = size;
            while left > 0 {
                let want = (left as usize).min(buf.len());
                let n = r.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(NarWriteError::ContentsTooShort { size, got: size - left });
                }
                self.event(&NarEvent::Contents(&buf[..n])).await?;
                left -= n as u64;
            }
            Ok(())
        }

        pub async fn finish(mut self) -> Result<W, NarWriteError> {
            self.enc.finish()?;
            self.w.flush().await?;
            Ok(self.w)
        }
    }
}
