//! The castore file system model: a `Directory` maps names to `Node`s.
//!
//! A Directory's digest is BLAKE3 of its canonical protobuf encoding: the
//! three lists (directories, files, symlinks) each sorted by name, default
//! values omitted — what prost emits for the message built by `to_proto`.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use thiserror::Error;

use crate::digest::{B3Digest, DigestError};
use crate::proto;

pub const MAX_NAME_LEN: usize = 255;
pub const MAX_TARGET_LEN: usize = 4095;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum DirectoryError {
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{list} are not sorted: {name:?} after {prev:?}")]
    NotSorted { list: &'static str, prev: String, name: String },
    #[error("duplicate name {0:?}")]
    DuplicateName(String),
    #[error("entry {name:?}: invalid digest: {source}")]
    InvalidDigest { name: String, source: DigestError },
    #[error("symlink {name:?}: invalid target: {reason}")]
    InvalidTarget { name: String, reason: &'static str },
    #[error("entry has no node")]
    EmptyEntry,
    #[error("directory {name:?} claims size {claimed}, but its contents have at least {actual}")]
    SizeTooSmall { name: String, claimed: u64, actual: u64 },
    #[error("directory size overflows")]
    SizeOverflow,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Why `name` cannot be an entry name, if it cannot.
pub fn check_name(name: &[u8]) -> Result<(), DirectoryError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 255 bytes"
    } else if name == b"." || name == b".." {
        "'.' and '..' are not allowed"
    } else if name.contains(&b'/') {
        "contains '/'"
    } else if name.contains(&0) {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(DirectoryError::InvalidName { name: lossy(name), reason })
}

fn check_target(name: &[u8], target: &[u8]) -> Result<(), DirectoryError> {
    let reason = if target.is_empty() {
        "empty"
    } else if target.len() > MAX_TARGET_LEN {
        "longer than 4095 bytes"
    } else if target.contains(&0) {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(DirectoryError::InvalidTarget { name: lossy(name), reason })
}

/// A node of the tree, without its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A directory, by the digest of its `Directory` message; `size` as in
    /// [`Directory::size`].
    Directory {
        digest: B3Digest,
        size: u64,
    },
    /// A regular file, by the digest of its contents.
    File {
        digest: B3Digest,
        size: u64,
        executable: bool,
    },
    Symlink {
        target: Bytes,
    },
}

impl Node {
    /// The node as a named `proto::Entry` (e.g. a store path's root).
    pub fn to_entry(&self, name: Bytes) -> proto::Entry {
        use proto::entry::Entry as E;
        let entry = match self {
            Node::Directory { digest, size } => {
                E::Directory(proto::DirectoryEntry { name, digest: (*digest).into(), size: *size })
            }
            Node::File { digest, size, executable } => {
                E::File(proto::FileEntry { name, digest: (*digest).into(), size: *size, executable: *executable })
            }
            Node::Symlink { target } => E::Symlink(proto::SymlinkEntry { name, target: target.clone() }),
        };
        proto::Entry { entry: Some(entry) }
    }

    /// Parses a `proto::Entry` into its name and node, validating the node
    /// (the name is returned unchecked: a root's name follows other rules).
    pub fn from_entry(entry: &proto::Entry) -> Result<(Bytes, Node), DirectoryError> {
        use proto::entry::Entry as E;
        match entry.entry.as_ref().ok_or(DirectoryError::EmptyEntry)? {
            E::Directory(d) => {
                Ok((d.name.clone(), Node::Directory { digest: digest_of(&d.name, &d.digest)?, size: d.size }))
            }
            E::File(f) => Ok((
                f.name.clone(),
                Node::File { digest: digest_of(&f.name, &f.digest)?, size: f.size, executable: f.executable },
            )),
            E::Symlink(s) => {
                check_target(&s.name, &s.target)?;
                Ok((s.name.clone(), Node::Symlink { target: s.target.clone() }))
            }
        }
    }
}

fn digest_of(name: &[u8], digest: &Bytes) -> Result<B3Digest, DirectoryError> {
    B3Digest::try_from(digest).map_err(|source| DirectoryError::InvalidDigest { name: lossy(name), source })
}

/// A validated directory: names are valid and unique, digests 32 bytes,
/// symlink targets valid. Children's sizes are checked where the children are
/// known (see `DirectoryService` puts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    nodes: BTreeMap<Bytes, Node>,
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a child; the name must be valid and not yet taken.
    pub fn add(&mut self, name: Bytes, node: Node) -> Result<(), DirectoryError> {
        check_name(&name)?;
        if let Node::Symlink { target } = &node {
            check_target(&name, target)?;
        }
        if self.nodes.contains_key(&name) {
            return Err(DirectoryError::DuplicateName(lossy(&name)));
        }
        self.nodes.insert(name, node);
        Ok(())
    }

    /// Children in bytewise name order.
    pub fn nodes(&self) -> impl Iterator<Item = (&Bytes, &Node)> {
        self.nodes.iter()
    }

    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Digests of the child directories.
    pub fn child_directories(&self) -> impl Iterator<Item = (&Bytes, B3Digest, u64)> {
        self.nodes.iter().filter_map(|(n, node)| match node {
            Node::Directory { digest, size } => Some((n, *digest, *size)),
            _ => None,
        })
    }

    /// Number of entries plus the sizes of the child directories: what a
    /// `DirectoryEntry` pointing here must carry.
    pub fn size(&self) -> u64 {
        self.nodes.len() as u64 + self.child_directories().map(|(_, _, s)| s).fold(0u64, u64::saturating_add)
    }

    pub fn to_proto(&self) -> proto::Directory {
        let mut d = proto::Directory::default();
        for (name, node) in &self.nodes {
            match node {
                Node::Directory { digest, size } => d.directories.push(proto::DirectoryEntry {
                    name: name.clone(),
                    digest: (*digest).into(),
                    size: *size,
                }),
                Node::File { digest, size, executable } => d.files.push(proto::FileEntry {
                    name: name.clone(),
                    digest: (*digest).into(),
                    size: *size,
                    executable: *executable,
                }),
                Node::Symlink { target } => {
                    d.symlinks.push(proto::SymlinkEntry { name: name.clone(), target: target.clone() })
                }
            }
        }
        d
    }

    /// BLAKE3 of the canonical encoding.
    pub fn digest(&self) -> B3Digest {
        B3Digest::of(&self.to_proto().encode_to_vec())
    }
}

impl TryFrom<proto::Directory> for Directory {
    type Error = DirectoryError;

    /// Validates a received Directory: each list strictly sorted, names valid
    /// and unique across lists, digests 32 bytes, symlink targets valid.
    fn try_from(p: proto::Directory) -> Result<Self, DirectoryError> {
        fn check_sorted<'a>(list: &'static str, names: impl Iterator<Item = &'a Bytes>) -> Result<(), DirectoryError> {
            let mut prev: Option<&Bytes> = None;
            for name in names {
                if let Some(prev) = prev {
                    if name == prev {
                        return Err(DirectoryError::DuplicateName(lossy(name)));
                    }
                    if name < prev {
                        return Err(DirectoryError::NotSorted { list, prev: lossy(prev), name: lossy(name) });
                    }
                }
                prev = Some(name);
            }
            Ok(())
        }
        check_sorted("directories", p.directories.iter().map(|e| &e.name))?;
        check_sorted("files", p.files.iter().map(|e| &e.name))?;
        check_sorted("symlinks", p.symlinks.iter().map(|e| &e.name))?;

        let mut d = Directory::new();
        for e in p.directories {
            let digest = digest_of(&e.name, &e.digest)?;
            d.add(e.name, Node::Directory { digest, size: e.size })?;
        }
        for e in p.files {
            let digest = digest_of(&e.name, &e.digest)?;
            d.add(e.name, Node::File { digest, size: e.size, executable: e.executable })?;
        }
        for e in p.symlinks {
            d.add(e.name, Node::Symlink { target: e.target })?;
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests;
