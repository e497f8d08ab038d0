//! Chooses a directory backend by address URL.

use std::sync::Arc;

use super::{DirectoryService, GrpcDirectoryService, MemoryDirectoryService, SledDirectoryService};
use crate::channel::{absolute_path, channel_from_url, parse_addr};
use crate::errors::Error;

/// `memory://`, `sled:///abs/path` (`sled://` alone: a temporary database),
/// `grpc+unix:///abs/path.sock`, `grpc+http://host:port`.
pub fn from_addr(addr: &str) -> Result<Arc<dyn DirectoryService>, Error> {
    let url = parse_addr("directory service", addr)?;
    Ok(match url.scheme() {
        "memory" => Arc::new(MemoryDirectoryService::default()),
        "sled" if url.path().is_empty() || url.path() == "/" => Arc::new(SledDirectoryService::temporary()?),
        "sled" => Arc::new(SledDirectoryService::open(&absolute_path(&url)?)?),
        "grpc+unix" | "grpc+http" => Arc::new(GrpcDirectoryService::from_channel(channel_from_url(&url)?)),
        other => {
            return Err(Error::InvalidRequest(format!(
                "unsupported directory service address {addr:?} (scheme {other}); use memory://, sled:///path, grpc+unix:///path or grpc+http://host:port"
            )))
        }
    })
}
