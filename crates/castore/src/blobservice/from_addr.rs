//! Chooses a blob backend by address URL.

use std::sync::Arc;

use super::{BlobService, GrpcBlobService, MemoryBlobService, ObjectStoreFileBlobService};
use crate::channel::{absolute_path, channel_from_url, parse_addr};
use crate::errors::Error;

/// `memory://`, `objectstore+file:///abs/path`, `grpc+unix:///abs/path.sock`,
/// `grpc+http://host:port`.
pub fn from_addr(addr: &str) -> Result<Arc<dyn BlobService>, Error> {
    let url = parse_addr("blob service", addr)?;
    Ok(match url.scheme() {
        "memory" => Arc::new(MemoryBlobService::default()),
        "objectstore+file" => Arc::new(ObjectStoreFileBlobService::open(&absolute_path(&url)?)?),
        "grpc+unix" | "grpc+http" => Arc::new(GrpcBlobService::from_channel(channel_from_url(&url)?)),
        other => {
            return Err(Error::InvalidRequest(format!(
                "unsupported blob service address {addr:?} (scheme {other}); use memory://, objectstore+file:///path, grpc+unix:///path or grpc+http://host:port"
            )))
        }
    })
}
