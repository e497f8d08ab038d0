//! `memory://` — blobs held whole in a map; volatile, for tests.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{bytes_reader, BlobReader, BlobService, BlobWriter, ChannelWriter, ChunkMeta, StoredBlob};
use crate::digest::B3Digest;

/// Each blob whole, with when it was last written.
#[derive(Clone, Default)]
pub struct MemoryBlobService {
    blobs: Arc<RwLock<HashMap<B3Digest, (Bytes, SystemTime)>>>,
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
        Ok(self.blobs.read().expect("poisoned").get(digest).map(|(b, _)| bytes_reader(b.clone())))
    }

    async fn read_unchunked(&self, digest: &B3Digest) -> io::Result<Option<Bytes>> {
        Ok(self.blobs.read().expect("poisoned").get(digest).map(|(b, _)| b.clone()))
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        let blobs = self.blobs.clone();
        Box::new(ChannelWriter::spawn(16, move |mut rx| async move {
            let mut data = BytesMut::new();
            let mut hasher = blake3::Hasher::new();
            while let Some(b) = rx.recv().await {
                if b.is_empty() {
                    let digest = B3Digest::from(hasher.finalize());
                    blobs.write().expect("poisoned").insert(digest, (data.freeze(), SystemTime::now()));
                    return Ok(digest);
                }
                hasher.update(&b);
                data.extend_from_slice(&b);
            }
            Err(io::Error::new(io::ErrorKind::Interrupted, "blob writer dropped before close"))
        }))
    }

    fn list(&self) -> BoxStream<'static, io::Result<StoredBlob>> {
        let all: Vec<_> = self
            .blobs
            .read()
            .expect("poisoned")
            .iter()
            .map(|(d, (b, t))| Ok(StoredBlob { digest: *d, written: *t, stored_size: b.len() as u64, is_chunk: true }))
            .collect();
        futures::stream::iter(all).boxed()
    }

    async fn delete(&self, digest: &B3Digest, unless_written_since: SystemTime) -> io::Result<Option<u64>> {
        let mut blobs = self.blobs.write().expect("poisoned");
        match blobs.get(digest) {
            Some((_, t)) if *t < unless_written_since => Ok(blobs.remove(digest).map(|(b, _)| b.len() as u64)),
            _ => Ok(None),
        }
    }
}
