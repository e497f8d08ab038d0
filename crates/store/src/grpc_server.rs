//! The `snix.store.v1` PathInfoService gRPC server. Put refuses a path info
//! whose content is not all in the castore: a registered path is complete.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use snix_castore::blobservice::BlobService;
use snix_castore::directoryservice::DirectoryService;
use snix_castore::unix_ms;
use snix_castore::Node;
use tonic::{Request, Response, Status};

use crate::errors::Error;
use crate::nar::{calculate_nar, ensure_complete};
use crate::pathinfo::PathInfo;
use crate::pathinfoservice::PathInfoService;
use crate::proto::{self, get_path_info_request::ByWhat};

/// CalculateNAR results kept (content is immutable, so they never go stale).
const NAR_CACHE_ENTRIES: usize = 100_000;

pub struct GrpcPathInfoServer {
    infos: Arc<dyn PathInfoService>,
    blobs: Arc<dyn BlobService>,
    dirs: Arc<dyn DirectoryService>,
    nar_cache: Mutex<HashMap<Node, (u64, [u8; 32])>>,
}

impl GrpcPathInfoServer {
    pub fn new(infos: Arc<dyn PathInfoService>, blobs: Arc<dyn BlobService>, dirs: Arc<dyn DirectoryService>) -> Self {
        GrpcPathInfoServer { infos, blobs, dirs, nar_cache: Mutex::new(HashMap::new()) }
    }
}

pub type PathInfoServer = proto::path_info_service_server::PathInfoServiceServer<GrpcPathInfoServer>;

/// The server with our message size limits.
pub fn path_info_server(
    infos: Arc<dyn PathInfoService>,
    blobs: Arc<dyn BlobService>,
    dirs: Arc<dyn DirectoryService>,
) -> PathInfoServer {
    proto::path_info_service_server::PathInfoServiceServer::new(GrpcPathInfoServer::new(infos, blobs, dirs))
        .max_decoding_message_size(crate::pathinfoservice::grpc::MAX_MESSAGE)
        .max_encoding_message_size(crate::pathinfoservice::grpc::MAX_MESSAGE)
}

#[tonic::async_trait]
impl proto::path_info_service_server::PathInfoService for GrpcPathInfoServer {
    async fn get(&self, req: Request<proto::GetPathInfoRequest>) -> Result<Response<proto::PathInfo>, Status> {
        let Some(ByWhat::ByOutputHash(d)) = req.into_inner().by_what else {
            return Err(Error::InvalidRequest("GetPathInfoRequest without by_output_hash".into()).into());
        };
        let digest = digest_arg(&d)?;
        match self.infos.get(digest).await? {
            Some(info) => Ok(Response::new(info.to_proto())),
            None => Err(Status::not_found(format!("no path info for {}", nix_compat::nixbase32::encode(&digest)))),
        }
    }

    async fn put(&self, req: Request<proto::PathInfo>) -> Result<Response<proto::PathInfo>, Status> {
        let info = PathInfo::try_from(req.into_inner()).map_err(Error::from)?;
        ensure_complete(&info.node, &*self.blobs, &*self.dirs)
            .await
            .map_err(|source| Error::Incomplete { path: info.store_path.clone(), source })?;
        let stored = self.infos.put(info).await?;
        Ok(Response::new(stored.to_proto()))
    }

    async fn calculate_nar(
        &self,
        req: Request<snix_castore::proto::Entry>,
    ) -> Result<Response<proto::CalculateNarResponse>, Status> {
        let (_, node) = Node::from_entry(&req.into_inner()).map_err(snix_castore::Error::from)?;
        if let Some((size, sha)) = self.nar_cache.lock().expect("poisoned").get(&node).copied() {
            return Ok(Response::new(proto::CalculateNarResponse { nar_size: size, nar_sha256: sha.to_vec().into() }));
        }
        let (size, sha) = calculate_nar(&node, &*self.blobs, &*self.dirs).await.map_err(Error::from)?;
        let mut cache = self.nar_cache.lock().expect("poisoned");
        if cache.len() >= NAR_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(node, (size, sha));
        Ok(Response::new(proto::CalculateNarResponse { nar_size: size, nar_sha256: sha.to_vec().into() }))
    }

    type ListStream = Pin<Box<dyn Stream<Item = Result<proto::PathInfo, Status>> + Send>>;

    async fn list(&self, _req: Request<proto::ListPathInfoRequest>) -> Result<Response<Self::ListStream>, Status> {
        let s = self.infos.list().map(|r| r.map(|i| i.to_proto()).map_err(Status::from));
        Ok(Response::new(Box::pin(s)))
    }

    async fn delete(
        &self,
        req: Request<proto::DeletePathInfoRequest>,
    ) -> Result<Response<proto::DeletePathInfoResponse>, Status> {
        let digest = digest_arg(&req.into_inner().by_output_hash)?;
        let deleted = self.infos.delete(digest).await?;
        if let Some(i) = &deleted {
            tracing::info!(path = %i.store_path, "deleted");
        }
        Ok(Response::new(proto::DeletePathInfoResponse { deleted: deleted.map(|i| i.to_proto()) }))
    }

    type ListDeletedStream = Pin<Box<dyn Stream<Item = Result<proto::DeletedPathInfo, Status>> + Send>>;

    async fn list_deleted(
        &self,
        _req: Request<proto::ListDeletedPathInfoRequest>,
    ) -> Result<Response<Self::ListDeletedStream>, Status> {
        let s = self.infos.list_deleted().map(|r| {
            r.map(|d| proto::DeletedPathInfo {
                path_info: Some(d.info.to_proto()),
                deleted_unix_ms: unix_ms::from_time(d.deleted),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(s)))
    }

    async fn purge_deleted(
        &self,
        req: Request<proto::PurgeDeletedPathInfoRequest>,
    ) -> Result<Response<proto::PurgeDeletedPathInfoResponse>, Status> {
        let req = req.into_inner();
        let digest = digest_arg(&req.by_output_hash)?;
        let purged = self.infos.purge_deleted(digest, unix_ms::to_time(req.deleted_before_unix_ms)).await?;
        Ok(Response::new(proto::PurgeDeletedPathInfoResponse { purged }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::PathInfoChange, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<tonic::Streaming<proto::WatchPathInfoRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut requests = req.into_inner();
        let first = requests.message().await?.ok_or_else(|| Status::invalid_argument("a watch without its request"))?;
        // subscribed before we answer: every change after the answer is sent
        let watch = self.infos.watch(first.confirms).await?;
        if let Some(applied) = watch.applied {
            // the watcher's confirmations, until it stops sending them (then
            // `applied` drops, and nobody waits for it)
            tokio::spawn(async move {
                while let Ok(Some(r)) = requests.message().await {
                    applied.confirm(r.applied);
                }
            });
        }
        let s = watch.changes.map(|r| {
            r.map(|c| proto::PathInfoChange {
                store_path: Some(proto::StorePath {
                    name: c.store_path.name().to_string(),
                    digest: c.store_path.digest().to_vec().into(),
                }),
                deleted: c.deleted,
                sequence: c.sequence,
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(s)))
    }
}

/// A store path digest argument: 20 bytes.
fn digest_arg(d: &[u8]) -> Result<[u8; 20], Status> {
    d.try_into()
        .map_err(|_| Error::InvalidRequest(format!("store path digest has {} bytes, expected 20", d.len())).into())
}
