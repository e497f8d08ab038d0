//! NAR (Nix ARchive): the canonical serialisation of a file system tree.
//!
//! The format code is pure: [`NarDecoder`] turns bytes into [`NarEvent`]s and
//! [`NarEncoder`] turns events into bytes, neither touching any I/O. The
//! readers and writers in [`reader`] and [`writer`] are thin loops that move
//! bytes between those and `std::io` / tokio streams or the file system.
//!
//! Decoding then encoding the events of a valid NAR gives back the same bytes.

mod decoder;
mod encoder;
pub mod listing;
pub mod reader;
pub mod writer;

pub use decoder::NarDecoder;
pub use encoder::NarEncoder;

use thiserror::Error;

pub const MAGIC: &[u8] = b"nix-archive-1";
/// Longest entry name we accept (Linux NAME_MAX, and castore's limit).
pub const MAX_NAME_LEN: usize = 255;
/// Longest symlink target we accept (PATH_MAX - 1, and castore's limit).
pub const MAX_TARGET_LEN: usize = 4095;
/// Deepest directory nesting we accept; bounds the decoder's memory.
pub const MAX_DEPTH: usize = 10_000;

/// One step of a NAR, in stream order.
///
/// A regular file is `File` followed by `Contents` chunks adding up to `size`
/// (none for an empty file). A directory is `DirectoryStart`, then per child
/// `Entry` followed by the child's events, then `DirectoryEnd`. After the root
/// node a decoder reports `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NarEvent<'a> {
    File { executable: bool, size: u64 },
    Contents(&'a [u8]),
    Symlink { target: Vec<u8> },
    DirectoryStart,
    Entry { name: Vec<u8> },
    DirectoryEnd,
    End,
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum NarError {
    #[error("not a NAR: bad magic at offset 0")]
    BadMagic,
    #[error("offset {offset}: expected {expected}, found {found:?}")]
    UnexpectedToken { offset: u64, expected: &'static str, found: String },
    #[error("offset {offset}: token of {len} bytes where at most {max} are allowed ({expected})")]
    TokenTooLong { offset: u64, len: u64, max: usize, expected: &'static str },
    #[error("offset {offset}: non-zero padding byte")]
    NonZeroPadding { offset: u64 },
    #[error("offset {offset}: invalid entry name {name:?}: {reason}")]
    InvalidName { offset: u64, name: String, reason: &'static str },
    #[error("offset {offset}: entry {name:?} is not after {prev:?} (names must be strictly ascending)")]
    NotSorted { offset: u64, prev: String, name: String },
    #[error("offset {offset}: duplicate entry name {name:?}")]
    DuplicateName { offset: u64, name: String },
    #[error("offset {offset}: invalid symlink target {target:?}: {reason}")]
    InvalidTarget { offset: u64, target: String, reason: &'static str },
    #[error("offset {offset}: directories nested deeper than {MAX_DEPTH}")]
    TooDeep { offset: u64 },
    #[error("NAR truncated at offset {offset} (expected {expected})")]
    Truncated { offset: u64, expected: &'static str },
    #[error("offset {offset}: data after the end of the NAR")]
    TrailingData { offset: u64 },
    #[error("the decoder already failed: {0}")]
    Poisoned(Box<NarError>),
}

/// Errors from producing a NAR: events out of order, or I/O.
#[derive(Debug, Error)]
pub enum NarWriteError {
    #[error("NAR event {event} is not allowed here (expected {expected})")]
    UnexpectedEvent { event: &'static str, expected: &'static str },
    #[error("file contents overrun: {got} bytes written for a file of {size}")]
    ContentsTooLong { size: u64, got: u64 },
    #[error("file contents underrun: {got} bytes written for a file of {size}")]
    ContentsTooShort { size: u64, got: u64 },
    #[error("invalid entry name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("entry {name:?} is not after {prev:?} (names must be strictly ascending)")]
    NotSorted { prev: String, name: String },
    #[error("invalid symlink target {target:?}: {reason}")]
    InvalidTarget { target: String, reason: &'static str },
    #[error("{path}: unsupported file type (only regular files, directories and symlinks)")]
    UnsupportedFileType { path: String },
    #[error("{path}: file changed size while being archived ({expected} → {got} bytes)")]
    FileChanged { path: String, expected: u64, got: u64 },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Write(#[from] std::io::Error),
}

/// Why an entry name is invalid, if it is.
pub(crate) fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name.len() > MAX_NAME_LEN {
        Err("longer than 255 bytes")
    } else if name == b"." || name == b".." {
        Err("'.' and '..' are not allowed")
    } else if name.contains(&b'/') {
        Err("contains '/'")
    } else if name.contains(&0) {
        Err("contains NUL")
    } else {
        Ok(())
    }
}

/// Why a symlink target is invalid, if it is.
pub(crate) fn check_target(target: &[u8]) -> Result<(), &'static str> {
    if target.is_empty() {
        Err("empty")
    } else if target.len() > MAX_TARGET_LEN {
        Err("longer than 4095 bytes")
    } else if target.contains(&0) {
        Err("contains NUL")
    } else {
        Ok(())
    }
}

pub(crate) fn padding_len(len: u64) -> usize {
    ((8 - (len % 8)) % 8) as usize
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests;
