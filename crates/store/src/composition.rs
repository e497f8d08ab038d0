//! Addresses → services: which path-info backend an address URL names, and
//! the three services of a store together. A new backend is one file in
//! `pathinfoservice/` plus its scheme here (and a row in
//! `tests/conformance.rs`).

use std::sync::Arc;

use snix_castore::blobservice::BlobService;
use snix_castore::channel::{absolute_path, channel_from_url, parse_addr};
use snix_castore::composition::CastoreServices;
use snix_castore::directoryservice::DirectoryService;

use crate::errors::Error;
use crate::pathinfoservice::{GrpcPathInfoService, MemoryPathInfoService, PathInfoService, SledPathInfoService};

/// `memory://`, `sled:///abs/path` (`sled://`: temporary),
/// `grpc+unix:///abs/path.sock`, `grpc+http://host:port`.
pub fn path_info_service(addr: &str) -> Result<Arc<dyn PathInfoService>, Error> {
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

/// The three services of a store.
#[derive(Clone)]
pub struct StoreServices {
    pub blobs: Arc<dyn BlobService>,
    pub dirs: Arc<dyn DirectoryService>,
    pub infos: Arc<dyn PathInfoService>,
}

impl StoreServices {
    pub fn from_addrs(blob: &str, directory: &str, path_info: &str) -> Result<Self, Error> {
        let CastoreServices { blobs, dirs } = CastoreServices::from_addrs(blob, directory)?;
        Ok(StoreServices { blobs, dirs, infos: path_info_service(path_info)? })
    }
}
