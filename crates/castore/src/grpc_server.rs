//! The `snix.castore.v1` gRPC services, served from any backends.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::blobservice::BlobService;
use crate::digest::B3Digest;
use crate::directory::Directory;
use crate::directoryservice::DirectoryService;
use crate::errors::{io_to_status, Error};
use crate::proto::{self, get_directory_request::ByWhat};
use crate::unix_ms;

/// Size of the messages a blob is streamed in (64–256 KiB keeps gRPC framing
/// overhead small and every message far under the 4 MiB limit).
pub const READ_MESSAGE: usize = 1024 * 1024;
/// The longest range a Read may ask for: a range is answered from memory.
pub const READ_RANGE_MAX: u64 = 16 * 1024 * 1024;

/// A buffer as Read messages: slices of it, not copies.
fn slices(data: bytes::Bytes) -> impl Iterator<Item = Result<proto::BlobChunk, Status>> {
    let len = data.len();
    (0..len)
        .step_by(READ_MESSAGE)
        .map(move |off| Ok(proto::BlobChunk { data: data.slice(off..len.min(off + READ_MESSAGE)) }))
}

fn digest_arg(b: &bytes::Bytes) -> Result<B3Digest, Status> {
    B3Digest::try_from(b).map_err(|e| Status::invalid_argument(format!("invalid digest: {e}")))
}

pub struct GrpcBlobServer {
    svc: Arc<dyn BlobService>,
}

impl GrpcBlobServer {
    pub fn new(svc: Arc<dyn BlobService>) -> Self {
        GrpcBlobServer { svc }
    }
}

#[tonic::async_trait]
impl proto::blob_service_server::BlobService for GrpcBlobServer {
    async fn stat(&self, req: Request<proto::StatBlobRequest>) -> Result<Response<proto::StatBlobResponse>, Status> {
        let req = req.into_inner();
        let digest = digest_arg(&req.digest)?;
        let chunks = self.svc.chunks(&digest).await.map_err(io_to_status)?;
        let Some(chunks) = chunks else { return Err(Status::not_found(format!("blob {digest}"))) };
        let chunks = if req.send_chunks {
            chunks
                .into_iter()
                .map(|c| proto::stat_blob_response::ChunkMeta { digest: c.digest.into(), size: c.size })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(proto::StatBlobResponse { chunks, bao: Default::default() }))
    }

    type ReadStream = Pin<Box<dyn Stream<Item = Result<proto::BlobChunk, Status>> + Send>>;

    async fn read(&self, req: Request<proto::ReadBlobRequest>) -> Result<Response<Self::ReadStream>, Status> {
        let req = req.into_inner();
        let digest = digest_arg(&req.digest)?;
        if req.length > READ_RANGE_MAX {
            return Err(Status::invalid_argument(format!(
                "a range read asks for at most {READ_RANGE_MAX} bytes (got {}); read the blob whole for more",
                req.length
            )));
        }
        if req.length > 0 {
            let data = self.svc.read_range(&digest, req.offset, req.length).await.map_err(io_to_status)?;
            let Some(data) = data else { return Err(Status::not_found(format!("blob {digest}"))) };
            return Ok(Response::new(Box::pin(futures::stream::iter(slices(data)))));
        }
        // a chunk (or any blob held in one piece) goes out as slices of its
        // buffer, not copied through a reader
        if let Some(data) = self.svc.read_unchunked(&digest).await.map_err(io_to_status)? {
            return Ok(Response::new(Box::pin(futures::stream::iter(slices(data)))));
        }
        let reader = self.svc.open_read(&digest).await.map_err(io_to_status)?;
        let Some(reader) = reader else { return Err(Status::not_found(format!("blob {digest}"))) };
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, READ_MESSAGE).map(move |r| match r {
            Ok(data) => Ok(proto::BlobChunk { data }),
            Err(e) => {
                tracing::error!(%digest, error = %e, "reading blob failed");
                Err(io_to_status(e))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn put(&self, req: Request<Streaming<proto::BlobChunk>>) -> Result<Response<proto::PutBlobResponse>, Status> {
        let aborted = req.extensions().get::<BodyAborted>().cloned().unwrap_or_default();
        let mut stream = req.into_inner();
        let mut writer = self.svc.open_write().await;
        // on any error the writer is dropped unclosed: nothing becomes visible
        while let Some(chunk) = stream.message().await? {
            writer.write_all(&chunk.data).await.map_err(io_to_status)?;
        }
        if aborted.is_set() {
            return Err(aborted_status());
        }
        let digest = writer.close().await.map_err(io_to_status)?;
        Ok(Response::new(proto::PutBlobResponse { digest: digest.into() }))
    }

    type ListStream = Pin<Box<dyn Stream<Item = Result<proto::StoredBlob, Status>> + Send>>;

    async fn list(&self, _req: Request<proto::ListBlobsRequest>) -> Result<Response<Self::ListStream>, Status> {
        let s = self.svc.list().map(|r| {
            r.map(|b| proto::StoredBlob {
                digest: b.digest.into(),
                written_unix_ms: unix_ms::from_time(b.written),
                stored_size: b.stored_size,
                is_chunk: b.is_chunk,
            })
            .map_err(io_to_status)
        });
        Ok(Response::new(Box::pin(s)))
    }

    async fn delete(
        &self,
        req: Request<proto::DeleteBlobRequest>,
    ) -> Result<Response<proto::DeleteBlobResponse>, Status> {
        let req = req.into_inner();
        let digest = digest_arg(&req.digest)?;
        let since = unix_ms::to_time(req.unless_written_since_unix_ms);
        let freed = self.svc.delete(&digest, since).await.map_err(io_to_status)?;
        Ok(Response::new(proto::DeleteBlobResponse { deleted: freed.is_some(), freed: freed.unwrap_or(0) }))
    }
}

pub struct GrpcDirectoryServer {
    svc: Arc<dyn DirectoryService>,
}

impl GrpcDirectoryServer {
    pub fn new(svc: Arc<dyn DirectoryService>) -> Self {
        GrpcDirectoryServer { svc }
    }
}

#[tonic::async_trait]
impl proto::directory_service_server::DirectoryService for GrpcDirectoryServer {
    type GetStream = Pin<Box<dyn Stream<Item = Result<proto::Directory, Status>> + Send>>;

    async fn get(&self, req: Request<proto::GetDirectoryRequest>) -> Result<Response<Self::GetStream>, Status> {
        let req = req.into_inner();
        let Some(ByWhat::Digest(d)) = req.by_what else {
            return Err(Status::invalid_argument("GetDirectoryRequest without a digest"));
        };
        let digest = digest_arg(&d)?;
        if !req.recursive {
            let dir = self.svc.get(&digest).await?.ok_or_else(|| Status::not_found(format!("directory {digest}")))?;
            let one = futures::stream::once(async move { Ok(dir.to_proto()) });
            return Ok(Response::new(Box::pin(one)));
        }
        // check the root first so a missing one is a NotFound status, not a stream error
        if self.svc.get(&digest).await?.is_none() {
            return Err(Status::not_found(format!("directory {digest}")));
        }
        let stream = self.svc.get_recursive(&digest).map(|r| r.map(|d| d.to_proto()).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn put(
        &self,
        req: Request<Streaming<proto::Directory>>,
    ) -> Result<Response<proto::PutDirectoryResponse>, Status> {
        let aborted = req.extensions().get::<BodyAborted>().cloned().unwrap_or_default();
        let mut stream = req.into_inner();
        let mut batch = Vec::new();
        while let Some(p) = stream.message().await? {
            let i = batch.len();
            let dir = Directory::try_from(p)
                .map_err(|e| Status::invalid_argument(format!("directory #{i} of the stream: {e}")))?;
            batch.push(dir);
        }
        if aborted.is_set() {
            return Err(aborted_status());
        }
        let root = self.svc.put_batch(batch).await.map_err(|e: Error| Status::from(e))?;
        Ok(Response::new(proto::PutDirectoryResponse { root_digest: root.into() }))
    }

    type ListStream = Pin<Box<dyn Stream<Item = Result<proto::StoredDirectory, Status>> + Send>>;

    async fn list(&self, _req: Request<proto::ListDirectoriesRequest>) -> Result<Response<Self::ListStream>, Status> {
        let s = self.svc.list().map(|r| {
            r.map(|d| proto::StoredDirectory {
                digest: d.digest.into(),
                written_unix_ms: unix_ms::from_time(d.written),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(s)))
    }

    async fn delete(
        &self,
        req: Request<proto::DeleteDirectoryRequest>,
    ) -> Result<Response<proto::DeleteDirectoryResponse>, Status> {
        let req = req.into_inner();
        let digest = digest_arg(&req.digest)?;
        let deleted = self.svc.delete(&digest, unix_ms::to_time(req.unless_written_since_unix_ms)).await?;
        Ok(Response::new(proto::DeleteDirectoryResponse { deleted }))
    }
}

pub type BlobServer = AbortDetect<proto::blob_service_server::BlobServiceServer<GrpcBlobServer>>;
pub type DirectoryServer = AbortDetect<proto::directory_service_server::DirectoryServiceServer<GrpcDirectoryServer>>;

/// The BlobService gRPC server for `svc`, with our message size limits and
/// abandoned-upload detection.
pub fn blob_server(svc: Arc<dyn BlobService>) -> BlobServer {
    AbortDetect(
        proto::blob_service_server::BlobServiceServer::new(GrpcBlobServer::new(svc))
            .max_decoding_message_size(crate::blobservice::grpc::MAX_MESSAGE)
            .max_encoding_message_size(crate::blobservice::grpc::MAX_MESSAGE),
    )
}

/// The DirectoryService gRPC server for `svc`, with our message size limits
/// and abandoned-upload detection.
pub fn directory_server(svc: Arc<dyn DirectoryService>) -> DirectoryServer {
    AbortDetect(
        proto::directory_service_server::DirectoryServiceServer::new(GrpcDirectoryServer::new(svc))
            .max_decoding_message_size(crate::directoryservice::grpc::MAX_MESSAGE)
            .max_encoding_message_size(crate::directoryservice::grpc::MAX_MESSAGE),
    )
}

/// Set in a request's extensions by [`AbortDetectLayer`] when the request
/// body ended with an error (a stream reset) rather than cleanly.
#[derive(Clone, Default, Debug)]
pub struct BodyAborted(Arc<std::sync::atomic::AtomicBool>);

impl BodyAborted {
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Wraps a gRPC service so that each request body is watched. Why: tonic's
/// `Streaming` reports a client's RST_STREAM CANCEL as a clean end of
/// stream, so an upload the client abandoned would look complete and be
/// stored. The flag this sets lets the Put handlers store nothing.
#[derive(Clone, Debug)]
pub struct AbortDetect<S>(S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for AbortDetect<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for AbortDetect<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let flag = BodyAborted::default();
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(flag.clone());
        let body = tonic::body::Body::new(WatchedBody { inner: body, flag });
        self.0.call(http::Request::from_parts(parts, body))
    }
}

struct WatchedBody {
    inner: tonic::body::Body,
    flag: BodyAborted,
}

impl http_body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Err(_))) = &r {
            self.flag.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn aborted_status() -> Status {
    Status::cancelled("the client abandoned the upload; nothing was stored")
}

/// A router serving both castore services (what tests, benchmarks and the
/// daemons start from; the daemons add health and reflection).
pub fn castore_router(
    blobs: Arc<dyn BlobService>,
    dirs: Arc<dyn DirectoryService>,
) -> tonic::transport::server::Router {
    crate::channel::server_builder().add_service(blob_server(blobs)).add_service(directory_server(dirs))
}
