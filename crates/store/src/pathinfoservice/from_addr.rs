//! Chooses a path info backend by address URL.

use std::sync::Arc;

use snix_castore::channel::{absolute_path, channel_from_url, parse_addr};
use snix_castore::Error;

use super::{GrpcPathInfoService, MemoryPathInfoService, PathInfoService, SledPathInfoService};

/// `memory://`, `sled:///abs/path` (`sled://`: temporary),
/// `grpc+unix:///abs/path.sock`, `grpc+http://host:port`.
pub fn from_addr(addr: &str) -> Result<Arc<dyn PathInfoService>, Error> {
    let url = parse_addr("path info service", addr)?;
    Ok(match url.scheme() {
        "memory" => Arc::new(MemoryPathInfoService::default()),
        "sled" if url.path().is_empty() || url.path() == "/" => Arc::new(SledPathInfoService::temporary()?),
        "sled" => Arc::new(SledPathInfoService::open(&absolute_path(&url)?)?),
        "grpc+unix" | "grpc+http" => Arc::new(GrpcPathInfoService::from_channel(channel_from_url(&url)?)),
        other => {
            return Err(Error::InvalidRequest(format!(
                "unsupported path info service address {addr:?} (scheme {other}); use memory://, sled:///path, grpc+unix:///path or grpc+http://host:port"
            )))
        }
    })
}
