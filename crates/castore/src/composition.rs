//! Addresses → services: which backend an address URL names, for each of
//! the castore's two services. A new backend is one file in `blobservice/`
//! or `directoryservice/` plus its scheme here (and a row in
//! `tests/conformance.rs`).

use std::sync::Arc;

use crate::blobservice::{BlobService, GrpcBlobService, MemoryBlobService, ObjectStoreFileBlobService};
use crate::channel::{absolute_path, channel_from_url, parse_addr};
use crate::directoryservice::{DirectoryService, GrpcDirectoryService, MemoryDirectoryService, SledDirectoryService};
use crate::errors::Error;

/// `memory://`, `objectstore+file:///abs/path`, `grpc+unix:///abs/path.sock`,
/// `grpc+http://host:port`.
pub fn blob_service(addr: &str) -> Result<Arc<dyn BlobService>, Error> {
    let url = parse_addr("blob service", addr)?;
    Ok(match url.scheme() {
        "memory" => Arc::new(MemoryBlobService::default()),
        "objectstore+file" => Arc::new(ObjectStoreFileBlobService::open(&absolute_path(&url)?)?),
        "grpc+unix" => Arc::new(GrpcBlobService::from_channel(channel_from_url(&url)?, false)),
        "grpc+http" => Arc::new(GrpcBlobService::from_channel(channel_from_url(&url)?, true)),
        other => {
            return Err(Error::InvalidRequest(format!(
                "unsupported blob service address {addr:?} (scheme {other}); use memory://, objectstore+file:///path, grpc+unix:///path or grpc+http://host:port"
            )))
        }
    })
}

/// `memory://`, `sled:///abs/path` (`sled://` alone: a temporary database),
/// `grpc+unix:///abs/path.sock`, `grpc+http://host:port`.
pub fn directory_service(addr: &str) -> Result<Arc<dyn DirectoryService>, Error> {
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

/// Both castore services.
#[derive(Clone)]
pub struct CastoreServices {
    pub blobs: Arc<dyn BlobService>,
    pub dirs: Arc<dyn DirectoryService>,
}

impl CastoreServices {
    pub fn from_addrs(blob: &str, directory: &str) -> Result<Self, Error> {
        Ok(CastoreServices { blobs: blob_service(blob)?, dirs: directory_service(directory)? })
    }
}
