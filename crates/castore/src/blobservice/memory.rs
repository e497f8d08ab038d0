//! `memory://` — blobs held whole in a map; volatile, for tests.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};

use super::{bytes_reader, BlobReader, BlobService, BlobWriter, ChannelWriter, ChunkMeta};
use crate::digest::B3Digest;

#[derive(Clone, Default)]
pub struct MemoryBlobService {
    blobs: Arc<RwLock<HashMap<B3Digest, Bytes>>>,
}

#[async_trait::async_trait]
impl BlobService for MemoryBlobService {
    async fn has(&self, digest: &B3Digest) -> io::Result<bool> {
        Ok(self.blobs.read().expect("poisoned").contains_key(digest))
    }

    async fn chunks(&self, digest: &B3Digest) -> io::Result<Option<Vec<ChunkMeta>>> {
        Ok(self.blobs.read().expect("poisoned").contains_key(digest).then(Vec::new))
    }

    async fn open_read(&self, digest: &B3Digest) -> io::Result<Option<Box<dyn BlobReader>>> {
        Ok(self.blobs.read().expect("poisoned").get(digest).cloned().map(bytes_reader))
    }

    async fn read_unchunked(&self, digest: &B3Digest) -> io::Result<Option<Bytes>> {
        Ok(self.blobs.read().expect("poisoned").get(digest).cloned())
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        let blobs = self.blobs.clone();
        Box::new(ChannelWriter::spawn(16, move |mut rx| async move {
            let mut data = BytesMut::new();
            let mut hasher = blake3::Hasher::new();
            while let Some(b) = rx.recv().await {
                if b.is_empty() {
                    let digest = B3Digest::from(hasher.finalize());
                    blobs.write().expect("poisoned").insert(digest, data.freeze());
                    return Ok(digest);
                }
                hasher.update(&b);
                data.extend_from_slice(&b);
            }
            Err(io::Error::new(io::ErrorKind::Interrupted, "blob writer dropped before close"))
        }))
    }
}
