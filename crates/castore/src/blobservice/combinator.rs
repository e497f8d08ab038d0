//! A near/far pair: reads try the near (fast, local) service first and on a
//! miss copy the blob from the far one into the near one. Writes go to far
//! (the authoritative side).

use std::io;

use super::{BlobReader, BlobService, BlobWriter, ChunkMeta, StoredBlob};
use crate::digest::B3Digest;

pub struct CombinedBlobService<N, F> {
    near: N,
    far: F,
}

impl<N: BlobService, F: BlobService> CombinedBlobService<N, F> {
    pub fn new(near: N, far: F) -> Self {
        CombinedBlobService { near, far }
    }

    /// Copies a blob from far to near; false if far lacks it.
    async fn fill(&self, digest: &B3Digest) -> io::Result<bool> {
        let Some(mut r) = self.far.open_read(digest).await? else { return Ok(false) };
        let mut w = self.near.open_write().await;
        tokio::io::copy(&mut r, &mut w).await?;
        let got = w.close().await?;
        if got != *digest {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("far side sent {got} for blob {digest}")));
        }
        Ok(true)
    }
}

#[async_trait::async_trait]
impl<N: BlobService, F: BlobService> BlobService for CombinedBlobService<N, F> {
    async fn has(&self, digest: &B3Digest) -> io::Result<bool> {
        Ok(self.near.has(digest).await? || self.far.has(digest).await?)
    }

    async fn chunks(&self, digest: &B3Digest) -> io::Result<Option<Vec<ChunkMeta>>> {
        match self.near.chunks(digest).await? {
            Some(c) => Ok(Some(c)),
            None => self.far.chunks(digest).await,
        }
    }

    async fn open_read(&self, digest: &B3Digest) -> io::Result<Option<Box<dyn BlobReader>>> {
        if let Some(r) = self.near.open_read(digest).await? {
            return Ok(Some(r));
        }
        if !self.fill(digest).await? {
            return Ok(None);
        }
        self.near.open_read(digest).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.far.open_write().await
    }

    /// What the far (authoritative) side stores.
    fn list(&self) -> futures::stream::BoxStream<'static, io::Result<StoredBlob>> {
        self.far.list()
    }

    /// From both sides; what the far side freed.
    async fn delete(&self, digest: &B3Digest, unless_written_since: std::time::SystemTime) -> io::Result<Option<u64>> {
        self.near.delete(digest, unless_written_since).await?;
        self.far.delete(digest, unless_written_since).await
    }
}
