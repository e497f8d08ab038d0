//! `grpc+unix:///path.sock`, `grpc+http://host:port` — directories on a remote
//! castore daemon. Everything received is validated and checked against the
//! digest it was asked for.

use std::collections::HashSet;

use futures::stream::BoxStream;
use futures::StreamExt;
use tonic::transport::Channel;

use super::{DirectoryService, StoredDirectory};
use crate::digest::B3Digest;
use crate::directory::Directory;
use crate::errors::Error;
use crate::proto::directory_service_client::DirectoryServiceClient;
use crate::proto::{self, get_directory_request::ByWhat, GetDirectoryRequest};
use crate::unix_ms;

pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct GrpcDirectoryService {
    client: DirectoryServiceClient<Channel>,
}

impl GrpcDirectoryService {
    pub fn from_channel(channel: Channel) -> Self {
        GrpcDirectoryService {
            client: DirectoryServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        }
    }
}

fn received(p: proto::Directory) -> Result<Directory, Error> {
    Directory::try_from(p).map_err(|e| Error::Corrupt(format!("remote sent an invalid directory: {e}")))
}

#[async_trait::async_trait]
impl DirectoryService for GrpcDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>, Error> {
        let req = GetDirectoryRequest { by_what: Some(ByWhat::Digest((*digest).into())), recursive: false };
        let mut stream = match self.client.clone().get(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(s.into()),
        };
        let Some(p) = stream.message().await? else { return Ok(None) };
        let dir = received(p)?;
        if dir.digest() != *digest {
            return Err(Error::Corrupt(format!("remote sent directory {} for {digest}", dir.digest())));
        }
        Ok(Some(dir))
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory, Error>> {
        let mut client = self.client.clone();
        let root = *root;
        async_stream::try_stream! {
            let req = GetDirectoryRequest { by_what: Some(ByWhat::Digest(root.into())), recursive: true };
            let mut stream = client.get(req).await?.into_inner();
            // each directory must be one we were told about and have not had yet
            let mut expected = HashSet::from([root]);
            let mut seen = HashSet::new();
            while let Some(p) = stream.message().await? {
                let dir = received(p)?;
                let digest = dir.digest();
                if !expected.remove(&digest) || !seen.insert(digest) {
                    Err(Error::Corrupt(format!("remote sent unexpected directory {digest} under {root}")))?;
                }
                for (_, child, _) in dir.child_directories() {
                    if !seen.contains(&child) {
                        expected.insert(child);
                    }
                }
                yield dir;
            }
            if let Some(missing) = expected.into_iter().next() {
                Err(Error::Corrupt(format!("remote did not send directory {missing} under {root}")))?;
            }
        }
        .boxed()
    }

    async fn put_batch(&self, directories: Vec<Directory>) -> Result<B3Digest, Error> {
        let root = directories.last().ok_or_else(|| Error::InvalidRequest("empty directory batch".into()))?.digest();
        let protos: Vec<proto::Directory> = directories.iter().map(Directory::to_proto).collect();
        let resp = self.client.clone().put(tokio_stream::iter(protos)).await?.into_inner();
        let got = B3Digest::try_from(&resp.root_digest)?;
        if got != root {
            return Err(Error::Corrupt(format!("remote stored root {got}, expected {root}")));
        }
        Ok(root)
    }

    fn list(&self) -> BoxStream<'static, Result<StoredDirectory, Error>> {
        let mut client = self.client.clone();
        async_stream::try_stream! {
            let mut s = client.list(proto::ListDirectoriesRequest {}).await?.into_inner();
            while let Some(d) = s.message().await? {
                yield StoredDirectory { digest: B3Digest::try_from(&d.digest)?, written: unix_ms::to_time(d.written_unix_ms) };
            }
        }
        .boxed()
    }

    async fn delete(&self, digest: &B3Digest, unless_written_since: std::time::SystemTime) -> Result<bool, Error> {
        let req = proto::DeleteDirectoryRequest {
            digest: (*digest).into(),
            unless_written_since_unix_ms: unix_ms::from_time(unless_written_since),
        };
        Ok(self.client.clone().delete(req).await?.into_inner().deleted)
    }
}
