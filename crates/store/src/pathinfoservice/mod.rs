//! Path info storage: one trait, one backend per file, chosen by URL in
//! [`crate::composition`].

use std::sync::Arc;

use futures::stream::BoxStream;
use nix_compat::store_path::StorePath;

use crate::errors::Error;

use crate::pathinfo::PathInfo;

pub mod grpc;
mod memory;
mod sled;

pub use self::sled::SledPathInfoService;
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
}
