//! `grpc+unix:///path.sock`, `grpc+http://host:port` — blobs on a remote
//! castore daemon. What comes over the network is checked against its
//! digest; what comes over a unix socket is not again: the daemon on this
//! host checked each chunk as it read it from its storage, and checking it
//! twice cost a fifth of a first read's CPU through the mount.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tonic::transport::Channel;

use super::{
    bytes_reader, BlobReader, BlobService, BlobWriter, ChannelWriter, ChunkFetcher, ChunkMeta, ChunkedReader,
    RangeFetcher, StoredBlob,
};
use crate::digest::B3Digest;
use crate::errors::status_to_io;
use crate::proto::blob_service_client::BlobServiceClient;
use crate::proto::{BlobChunk, DeleteBlobRequest, ListBlobsRequest, ReadBlobRequest, StatBlobRequest};
use crate::unix_ms;

/// Largest message we send or accept on the blob API.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// Size of the pieces a Put stream is sent in.
const PUT_PIECE: usize = 256 * 1024;
const READAHEAD: usize = 8;

#[derive(Clone)]
pub struct GrpcBlobService {
    client: BlobServiceClient<Channel>,
    channel: Channel,
    /// Check what is read against its digest (a remote daemon).
    verify: bool,
}

/// The Put call's codec: like prost's, but a `None` item fails to encode,
/// which resets the HTTP/2 stream with an error. A dropped writer sends
/// `None`, so the server sees an error and discards the partial blob. (A
/// plain cancellation would not do: tonic servers read a client's CANCEL as
/// a clean end of stream, and would commit.)
#[derive(Default)]
struct AbortablePutCodec;

struct AbortablePutEncoder;
struct PutResponseDecoder;

impl tonic::codec::Codec for AbortablePutCodec {
    type Encode = Option<BlobChunk>;
    type Decode = crate::proto::PutBlobResponse;
    type Encoder = AbortablePutEncoder;
    type Decoder = PutResponseDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        AbortablePutEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        PutResponseDecoder
    }
}

impl tonic::codec::Encoder for AbortablePutEncoder {
    type Item = Option<BlobChunk>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Self::Item, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        match item {
            Some(m) => prost::Message::encode(&m, buf).map_err(|e| tonic::Status::internal(e.to_string())),
            None => Err(tonic::Status::aborted("blob writer dropped before close")),
        }
    }
}

impl tonic::codec::Decoder for PutResponseDecoder {
    type Item = crate::proto::PutBlobResponse;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        prost::Message::decode(buf).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl GrpcBlobService {
    /// A daemon at the other end of `channel`; `verify`: check what it
    /// sends against its digest (always, unless the daemon is on this host).
    pub fn from_channel(channel: Channel, verify: bool) -> Self {
        GrpcBlobService {
            client: BlobServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            channel,
            verify,
        }
    }

    /// Sends one Read and gathers what it streams back; `None` if the blob
    /// is absent. A chunk usually arrives as one message: kept without copying.
    async fn read_call(mut client: BlobServiceClient<Channel>, req: ReadBlobRequest) -> io::Result<Option<Bytes>> {
        let mut stream = match client.read(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(status_to_io(s)),
        };
        let mut parts: Vec<Bytes> = Vec::new();
        while let Some(msg) = stream.message().await.map_err(status_to_io)? {
            parts.push(msg.data);
        }
        Ok(Some(match parts.len() {
            0 => Bytes::new(),
            1 => parts.pop().expect("one part"),
            _ => parts.concat().into(),
        }))
    }

    /// Reads a whole blob (or chunk), checked against `digest` if `verify`.
    async fn read_verified(
        client: BlobServiceClient<Channel>,
        digest: B3Digest,
        verify: bool,
    ) -> io::Result<Option<Bytes>> {
        let req = ReadBlobRequest { digest: digest.into(), offset: 0, length: 0 };
        let Some(data) = Self::read_call(client, req).await? else { return Ok(None) };
        if verify && B3Digest::of(&data) != digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("remote sent wrong data for blob {digest}"),
            ));
        }
        Ok(Some(data))
    }

    /// Reads bytes `offset..offset + len` of a blob, as the daemon checked
    /// them (only over a unix socket: over the network, a piece cannot be
    /// checked against the blob's digest here).
    async fn read_range_trusted(
        client: BlobServiceClient<Channel>,
        digest: B3Digest,
        offset: u64,
        len: u64,
    ) -> io::Result<Option<Bytes>> {
        let req = ReadBlobRequest { digest: digest.into(), offset, length: len };
        let Some(data) = Self::read_call(client, req).await? else { return Ok(None) };
        if data.len() as u64 > len {
            // a server that does not know ranges sent the whole blob
            return Ok(Some(super::slice_range(&data, offset, len)));
        }
        Ok(Some(data))
    }

    async fn stat(&self, digest: &B3Digest, send_chunks: bool) -> io::Result<Option<Vec<ChunkMeta>>> {
        let req = StatBlobRequest { digest: (*digest).into(), send_chunks, send_bao: false };
        match self.client.clone().stat(req).await {
            Ok(r) => r
                .into_inner()
                .chunks
                .into_iter()
                .map(|c| {
                    let digest = B3Digest::try_from(&c.digest)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("remote chunk list: {e}")))?;
                    Ok(ChunkMeta { digest, size: c.size })
                })
                .collect::<io::Result<Vec<_>>>()
                .map(Some),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(status_to_io(s)),
        }
    }
}

#[async_trait::async_trait]
impl BlobService for GrpcBlobService {
    async fn has(&self, digest: &B3Digest) -> io::Result<bool> {
        Ok(self.stat(digest, false).await?.is_some())
    }

    async fn chunks(&self, digest: &B3Digest) -> io::Result<Option<Vec<ChunkMeta>>> {
        self.stat(digest, true).await
    }

    async fn open_read(&self, digest: &B3Digest) -> io::Result<Option<Box<dyn BlobReader>>> {
        let Some(chunks) = self.stat(digest, true).await? else { return Ok(None) };
        if chunks.len() > 1 {
            let (client, verify) = (self.client.clone(), self.verify);
            let fetch: ChunkFetcher = Arc::new(move |d| {
                Self::read_verified(client.clone(), d, verify)
                    .map(move |r| {
                        r?.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("chunk {d} is missing")))
                    })
                    .boxed()
            });
            let reader = ChunkedReader::new(chunks, fetch, READAHEAD);
            if verify {
                return Ok(Some(Box::new(reader)));
            }
            let client = self.client.clone();
            let fetch_range: RangeFetcher = Arc::new(move |d, offset, len| {
                Self::read_range_trusted(client.clone(), d, offset, len)
                    .map(move |r| {
                        r?.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("chunk {d} is missing")))
                    })
                    .boxed()
            });
            return Ok(Some(Box::new(reader.with_range_fetch(fetch_range))));
        }
        // stored whole (a single chunk): one verified read
        Ok(Self::read_verified(self.client.clone(), *digest, self.verify).await?.map(bytes_reader))
    }

    async fn read_range(&self, digest: &B3Digest, offset: u64, len: u64) -> io::Result<Option<Bytes>> {
        if self.verify {
            return super::read_range_via_reader(self, digest, offset, len).await;
        }
        Self::read_range_trusted(self.client.clone(), *digest, offset, len).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        let channel = self.channel.clone();
        Box::new(ChannelWriter::spawn(4, move |mut rx| async move {
            let (tx, req_rx) = tokio::sync::mpsc::channel::<Option<BlobChunk>>(4);
            let call = tokio::spawn(async move {
                let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(MAX_MESSAGE);
                grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("castore daemon: {e}")))?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static("/snix.castore.v1.BlobService/Put");
                let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(req_rx));
                grpc.client_streaming(request, path, AbortablePutCodec).await
            });
            let mut committed = false;
            while let Some(b) = rx.recv().await {
                if b.is_empty() {
                    committed = true;
                    break;
                }
                let mut b = b;
                while !b.is_empty() {
                    let piece = b.split_to(b.len().min(PUT_PIECE));
                    if tx.send(Some(BlobChunk { data: piece })).await.is_err() {
                        // the call ended early; its result says why
                        break;
                    }
                }
            }
            if !committed {
                // Fail the request stream (see AbortablePutCodec) *before* `tx`
                // drops: a dropped sender would end it cleanly, and commit.
                let _ = tx.send(None).await;
                let _ = call.await;
                drop(tx);
                return Err(io::Error::new(io::ErrorKind::Interrupted, "blob writer dropped before close"));
            }
            drop(tx);
            let resp = call.await.map_err(io::Error::other)?.map_err(status_to_io)?;
            B3Digest::try_from(&resp.into_inner().digest)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("remote put response: {e}")))
        }))
    }

    fn list(&self) -> futures::stream::BoxStream<'static, io::Result<StoredBlob>> {
        let mut client = self.client.clone();
        async_stream::try_stream! {
            let mut s = client.list(ListBlobsRequest {}).await.map_err(status_to_io)?.into_inner();
            while let Some(b) = s.message().await.map_err(status_to_io)? {
                let digest = B3Digest::try_from(&b.digest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("remote blob list: {e}")))?;
                yield StoredBlob {
                    digest,
                    written: unix_ms::to_time(b.written_unix_ms),
                    stored_size: b.stored_size,
                    is_chunk: b.is_chunk,
                };
            }
        }
        .boxed()
    }

    async fn delete(&self, digest: &B3Digest, unless_written_since: std::time::SystemTime) -> io::Result<Option<u64>> {
        let req = DeleteBlobRequest {
            digest: (*digest).into(),
            unless_written_since_unix_ms: unix_ms::from_time(unless_written_since),
        };
        let r = self.client.clone().delete(req).await.map_err(status_to_io)?.into_inner();
        Ok(r.deleted.then_some(r.freed))
    }
}
