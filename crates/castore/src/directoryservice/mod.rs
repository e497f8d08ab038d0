//! Directory storage: the Merkle tree of `Directory` messages.
//!
//! One trait, one backend per file, chosen by URL in [`crate::composition`].
//! Every backend validates a put batch the same way ([`validate_batch`]):
//! leaves first, every referenced directory sent before or already stored,
//! sizes not understated, everything connected to the root (the last one) —
//! and stores all of it or nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use futures::stream::BoxStream;
use futures::StreamExt;

use crate::digest::B3Digest;
use crate::directory::{Directory, DirectoryError};
use crate::errors::Error;

mod combinator;
pub mod grpc;
mod memory;
mod sled;

pub use self::sled::{flush_durably, SledDirectoryService};
pub use combinator::CombinedDirectoryService;
pub use grpc::GrpcDirectoryService;
pub use memory::MemoryDirectoryService;

#[async_trait::async_trait]
pub trait DirectoryService: Send + Sync + 'static {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>, Error>;

    /// The root, then every directory reachable from it exactly once, each
    /// after its parent (breadth-first). NotFound if the root is absent.
    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory, Error>>;

    /// Stores a batch sent leaves first, root last; returns the root's digest.
    /// All or nothing. Every directory of the batch, and every stored one it
    /// refers to, counts as written now (see [`StoredDirectory::written`]).
    async fn put_batch(&self, directories: Vec<Directory>) -> Result<B3Digest, Error>;

    /// Every directory stored, for garbage collection.
    fn list(&self) -> BoxStream<'static, Result<StoredDirectory, Error>>;

    /// Removes a directory unless it was written at or after
    /// `unless_written_since`; whether it was removed. Directories it refers
    /// to are not touched.
    async fn delete(&self, digest: &B3Digest, unless_written_since: SystemTime) -> Result<bool, Error>;
}

/// A stored directory, as garbage collection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDirectory {
    pub digest: B3Digest,
    /// When it was last written: put, put again, or referred to by a put
    /// (a writer that builds on it keeps it).
    pub written: SystemTime,
}

/// The stored directories a checked batch refers to without sending them:
/// a put builds on them, so they count as written too.
pub(crate) fn referred_outside(checked: &[(B3Digest, Directory)]) -> Vec<B3Digest> {
    let sent: HashSet<B3Digest> = checked.iter().map(|(d, _)| *d).collect();
    let mut out: Vec<B3Digest> = checked
        .iter()
        .flat_map(|(_, dir)| dir.child_directories().map(|(_, child, _)| child))
        .filter(|c| !sent.contains(c))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[async_trait::async_trait]
impl<T: DirectoryService + ?Sized> DirectoryService for Arc<T> {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>, Error> {
        (**self).get(digest).await
    }
    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory, Error>> {
        (**self).get_recursive(root)
    }
    async fn put_batch(&self, directories: Vec<Directory>) -> Result<B3Digest, Error> {
        (**self).put_batch(directories).await
    }
    fn list(&self) -> BoxStream<'static, Result<StoredDirectory, Error>> {
        (**self).list()
    }
    async fn delete(&self, digest: &B3Digest, unless_written_since: SystemTime) -> Result<bool, Error> {
        (**self).delete(digest, unless_written_since).await
    }
}

/// Breadth-first traversal through `get`, for backends without a faster way.
pub fn traverse<S: DirectoryService + Clone>(svc: S, root: B3Digest) -> BoxStream<'static, Result<Directory, Error>> {
    async_stream::try_stream! {
        let mut queue = VecDeque::from([root]);
        let mut seen = HashSet::from([root]);
        while let Some(digest) = queue.pop_front() {
            let dir = svc.get(&digest).await?.ok_or_else(|| Error::NotFound(format!("directory {digest}")))?;
            for (_, child, _) in dir.child_directories() {
                if seen.insert(child) {
                    queue.push_back(child);
                }
            }
            yield dir;
        }
    }
    .boxed()
}

/// Reorders a tree given root first (as `get_recursive` yields it) so that
/// every directory comes after all directories below it, as `put_batch`
/// wants. (Reversing breadth-first order is not enough when a directory is
/// reachable at several depths.)
pub fn leaves_first(tree: Vec<Directory>) -> Vec<Directory> {
    let Some(root) = tree.first().map(Directory::digest) else { return tree };
    let mut by_digest: HashMap<B3Digest, Directory> = tree.into_iter().map(|d| (d.digest(), d)).collect();
    let mut out = Vec::with_capacity(by_digest.len());
    let mut done = HashSet::new();
    // iterative post-order: (digest, children pushed?)
    let mut stack = vec![(root, false)];
    while let Some((d, expanded)) = stack.pop() {
        if done.contains(&d) {
            continue;
        }
        if expanded {
            done.insert(d);
            if let Some(dir) = by_digest.remove(&d) {
                out.push(dir);
            }
            continue;
        }
        stack.push((d, true));
        if let Some(dir) = by_digest.get(&d) {
            for (_, child, _) in dir.child_directories() {
                if !done.contains(&child) {
                    stack.push((child, false));
                }
            }
        }
    }
    out
}

/// Checks a leaves-first batch. `stored_size` looks up the size of an
/// already-stored directory referenced from the batch (`None`: absent).
/// Returns each directory with its digest, in the batch's order.
pub async fn validate_batch<F, Fut>(
    directories: Vec<Directory>,
    mut stored_size: F,
) -> Result<Vec<(B3Digest, Directory)>, Error>
where
    F: FnMut(B3Digest) -> Fut,
    Fut: std::future::Future<Output = Result<Option<u64>, Error>>,
{
    if directories.is_empty() {
        return Err(Error::InvalidRequest("empty directory batch".into()));
    }
    // digest → (size, position in batch)
    let mut known: HashMap<B3Digest, (u64, Option<usize>)> = HashMap::new();
    let mut out = Vec::with_capacity(directories.len());
    for (i, dir) in directories.into_iter().enumerate() {
        for (name, child, claimed) in dir.child_directories() {
            let actual = match known.get(&child) {
                Some((size, _)) => *size,
                None => {
                    let size = stored_size(child).await?.ok_or_else(|| {
                        Error::InvalidRequest(format!(
                            "directory #{i} refers to {child} (entry {:?}), which was neither sent before it nor is stored",
                            String::from_utf8_lossy(name)
                        ))
                    })?;
                    known.insert(child, (size, None));
                    size
                }
            };
            if claimed < actual {
                return Err(DirectoryError::SizeTooSmall {
                    name: String::from_utf8_lossy(name).into_owned(),
                    claimed,
                    actual,
                }
                .into());
            }
        }
        let digest = dir.digest();
        known.entry(digest).or_insert((dir.size(), Some(i)));
        out.push((digest, dir));
    }
    // every directory of the batch must be reachable from the root
    let mut reachable = HashSet::new();
    let mut queue = vec![out.len() - 1];
    let index: HashMap<B3Digest, usize> = out.iter().enumerate().map(|(i, (d, _))| (*d, i)).collect();
    while let Some(i) = queue.pop() {
        if reachable.insert(out[i].0) {
            for (_, child, _) in out[i].1.child_directories() {
                if let Some(&j) = index.get(&child) {
                    queue.push(j);
                }
            }
        }
    }
    if let Some((d, _)) = out.iter().find(|(d, _)| !reachable.contains(d)) {
        return Err(Error::InvalidRequest(format!("directory {d} in the batch is not connected to the root")));
    }
    Ok(out)
}
