//! Path info storage: one trait, one backend per file, chosen by URL in
//! [`crate::composition`].

use std::sync::Arc;
use std::time::SystemTime;

use futures::stream::BoxStream;
use nix_compat::store_path::StorePath;

use crate::errors::Error;

use crate::pathinfo::PathInfo;

mod changes;
pub mod grpc;
mod memory;
mod sled;

pub use self::sled::SledPathInfoService;
pub use changes::{ChangeFeed, CONFIRM_WITHIN};
pub use grpc::GrpcPathInfoService;
pub use memory::MemoryPathInfoService;

#[async_trait::async_trait]
pub trait PathInfoService: Send + Sync + 'static {
    /// By the 20-byte digest of the store path.
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error>;

    /// Stores `info` (replacing an earlier one for the same path) and returns
    /// what was stored.
    async fn put(&self, info: PathInfo) -> Result<PathInfo, Error>;

    /// Every path info.
    fn list(&self) -> BoxStream<'static, Result<PathInfo, Error>>;

    /// Unregisters a path: it is not found any more, but a tombstone keeps
    /// its content reachable for garbage collection (a reader that opened it
    /// keeps reading) until [`purge_deleted`](Self::purge_deleted). Returns
    /// what was unregistered. Registering the path again clears the tombstone.
    async fn delete(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error>;

    /// Every tombstone.
    fn list_deleted(&self) -> BoxStream<'static, Result<DeletedPathInfo, Error>>;

    /// Forgets a tombstone if its path was deleted before `deleted_before`.
    async fn purge_deleted(&self, digest: [u8; 20], deleted_before: SystemTime) -> Result<bool, Error>;

    /// Every change to the registered paths from when this returns on, each
    /// sent before the put or delete that made it returns. With `confirms`,
    /// the watcher confirms each change it applied ([`Watch::applied`]),
    /// and a put or delete returns only once it has (or after a bounded
    /// time, when the watcher is cut off). The stream ends with an error
    /// when the watcher fell behind, did not confirm in time, or the backend
    /// went away. [`Error::Unsupported`] where the backend cannot tell: then
    /// nothing may be cached on the strength of a path being absent.
    async fn watch(&self, confirms: bool) -> Result<Watch, Error>;
}

/// A path registered (or registered again) or unregistered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathChange {
    pub store_path: StorePath,
    pub deleted: bool,
    /// Increasing along a watch; what [`Applied::confirm`] takes.
    pub sequence: u64,
}

/// A watch of the registered paths ([`PathInfoService::watch`]).
pub struct Watch {
    pub changes: BoxStream<'static, Result<PathChange, Error>>,
    /// Present when the watch confirms.
    pub applied: Option<Applied>,
}

/// Where a confirming watcher says it has applied every change up to a
/// sequence number. Dropping every copy ends the confirming: nobody waits
/// for this watcher any more.
#[derive(Clone)]
pub struct Applied(Arc<tokio::sync::watch::Sender<u64>>);

impl Applied {
    pub fn new(tx: tokio::sync::watch::Sender<u64>) -> Self {
        Applied(Arc::new(tx))
    }

    /// Every change up to `sequence` is applied.
    pub fn confirm(&self, sequence: u64) {
        self.0.send_if_modified(|a| {
            let newer = sequence > *a;
            if newer {
                *a = sequence;
            }
            newer
        });
    }

    /// What was confirmed last, as it changes (for passing confirmations on).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// A deleted path's info, and when it was deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedPathInfo {
    pub info: PathInfo,
    pub deleted: SystemTime,
}

/// The path info of `path`: looked up by digest, and only if the name matches
/// too (a digest alone does not name a store path).
pub async fn get_path(infos: &dyn PathInfoService, path: &StorePath) -> Result<Option<PathInfo>, Error> {
    Ok(infos.get(*path.digest()).await?.filter(|i| i.store_path == *path))
}

#[async_trait::async_trait]
impl<T: PathInfoService + ?Sized> PathInfoService for Arc<T> {
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        (**self).get(digest).await
    }
    async fn put(&self, info: PathInfo) -> Result<PathInfo, Error> {
        (**self).put(info).await
    }
    fn list(&self) -> BoxStream<'static, Result<PathInfo, Error>> {
        (**self).list()
    }
    async fn delete(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        (**self).delete(digest).await
    }
    fn list_deleted(&self) -> BoxStream<'static, Result<DeletedPathInfo, Error>> {
        (**self).list_deleted()
    }
    async fn purge_deleted(&self, digest: [u8; 20], deleted_before: SystemTime) -> Result<bool, Error> {
        (**self).purge_deleted(digest, deleted_before).await
    }
    async fn watch(&self, confirms: bool) -> Result<Watch, Error> {
        (**self).watch(confirms).await
    }
}
