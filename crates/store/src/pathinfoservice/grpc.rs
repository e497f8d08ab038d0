//! `grpc+unix:///path.sock`, `grpc+http://host:port` — path infos on a
//! remote store daemon.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use snix_castore::Node;
use tonic::transport::Channel;

use super::{Applied, DeletedPathInfo, PathChange, PathInfoService, Watch};
use crate::errors::Error;
use crate::pathinfo::PathInfo;
use crate::proto::path_info_service_client::PathInfoServiceClient;
use crate::proto::{self, get_path_info_request::ByWhat};
use nix_compat::store_path::StorePath;
use snix_castore::unix_ms;

pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct GrpcPathInfoService {
    client: PathInfoServiceClient<Channel>,
}

fn received(p: proto::PathInfo) -> Result<PathInfo, Error> {
    PathInfo::try_from(p).map_err(|e| Error::InvalidReply(format!("path info: {e}")))
}

impl GrpcPathInfoService {
    pub fn from_channel(channel: Channel) -> Self {
        GrpcPathInfoService {
            client: PathInfoServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        }
    }

    /// NAR size and sha256 of the tree under `node`, computed by the daemon.
    pub async fn calculate_nar(&self, node: &Node) -> Result<(u64, [u8; 32]), Error> {
        let r = self.client.clone().calculate_nar(node.to_entry(Bytes::new())).await?.into_inner();
        let sha: [u8; 32] = r.nar_sha256[..]
            .try_into()
            .map_err(|_| Error::InvalidReply(format!("a {}-byte NAR sha256", r.nar_sha256.len())))?;
        Ok((r.nar_size, sha))
    }
}

#[async_trait::async_trait]
impl PathInfoService for GrpcPathInfoService {
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        let req = proto::GetPathInfoRequest { by_what: Some(ByWhat::ByOutputHash(Bytes::copy_from_slice(&digest))) };
        match self.client.clone().get(req).await {
            Ok(r) => {
                let info = received(r.into_inner())?;
                if info.store_path.digest() != &digest {
                    return Err(Error::InvalidReply(format!("{} for another digest", info.store_path)));
                }
                Ok(Some(info))
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo, Error> {
        let r = self.client.clone().put(info.to_proto()).await?.into_inner();
        received(r)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo, Error>> {
        let mut client = self.client.clone();
        async_stream::try_stream! {
            let mut s = client.list(proto::ListPathInfoRequest {}).await?.into_inner();
            while let Some(p) = s.message().await? {
                yield received(p)?;
            }
        }
        .boxed()
    }

    async fn delete(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        let req = proto::DeletePathInfoRequest { by_output_hash: Bytes::copy_from_slice(&digest) };
        let r = self.client.clone().delete(req).await?.into_inner();
        r.deleted.map(received).transpose()
    }

    fn list_deleted(&self) -> BoxStream<'static, Result<DeletedPathInfo, Error>> {
        let mut client = self.client.clone();
        async_stream::try_stream! {
            let mut s = client.list_deleted(proto::ListDeletedPathInfoRequest {}).await?.into_inner();
            while let Some(d) = s.message().await? {
                let info = d.path_info.ok_or_else(|| Error::InvalidReply("a tombstone without its path info".into()))?;
                yield DeletedPathInfo { info: received(info)?, deleted: unix_ms::to_time(d.deleted_unix_ms) };
            }
        }
        .boxed()
    }

    async fn purge_deleted(&self, digest: [u8; 20], deleted_before: std::time::SystemTime) -> Result<bool, Error> {
        let req = proto::PurgeDeletedPathInfoRequest {
            by_output_hash: Bytes::copy_from_slice(&digest),
            deleted_before_unix_ms: unix_ms::from_time(deleted_before),
        };
        Ok(self.client.clone().purge_deleted(req).await?.into_inner().purged)
    }

    async fn watch(&self, confirms: bool) -> Result<Watch, Error> {
        // what we confirm goes to the daemon in later messages of the call
        let (applied, requests) = if confirms {
            let (tx, rx) = tokio::sync::watch::channel(0u64);
            (Some(Applied::new(tx)), confirmations(rx))
        } else {
            let (tx, only) = tokio::sync::mpsc::unbounded_channel();
            let _ = tx.send(proto::WatchPathInfoRequest::default());
            (None, tokio_stream::wrappers::UnboundedReceiverStream::new(only))
        };
        // returns once the daemon answered, that is, once it is subscribed
        let mut s = match self.client.clone().watch(requests).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                return Err(Error::Unsupported(format!("the store daemon does not tell of changes ({})", s.message())))
            }
            Err(s) => return Err(s.into()),
        };
        let changes = async_stream::try_stream! {
            while let Some(c) = s.message().await? {
                let p = c.store_path.ok_or_else(|| Error::InvalidReply("a change without its store path".into()))?;
                let digest: [u8; 20] = p.digest[..]
                    .try_into()
                    .map_err(|_| Error::InvalidReply(format!("a change of a {}-byte digest", p.digest.len())))?;
                let store_path = StorePath::from_parts(digest, &p.name)
                    .map_err(|e| Error::InvalidReply(format!("a change of an invalid store path: {e}")))?;
                yield PathChange { store_path, deleted: c.deleted, sequence: c.sequence };
            }
        }
        .boxed();
        Ok(Watch { changes, applied })
    }
}

/// A confirming watch's messages: the first asks to confirm, each later one
/// says what was confirmed last (the latest, when several came meanwhile).
/// They end when every [`Applied`] is dropped. (A channel's stream, a named
/// type: with a boxed one the compiler cannot prove the call's future Send.)
fn confirmations(mut rx: tokio::sync::watch::Receiver<u64>) -> Requests {
    let (tx, out) = tokio::sync::mpsc::unbounded_channel();
    let _ = tx.send(proto::WatchPathInfoRequest { confirms: true, applied: 0 });
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let applied = *rx.borrow_and_update();
            if tx.send(proto::WatchPathInfoRequest { confirms: false, applied }).is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::UnboundedReceiverStream::new(out)
}

type Requests = tokio_stream::wrappers::UnboundedReceiverStream<proto::WatchPathInfoRequest>;
