//! `sled:///path` — directories in an embedded sled database, keyed by digest,
//! stored in their canonical encoding and checked against the key on read.

use std::path::Path;

use futures::stream::BoxStream;
use prost::Message;

use super::{traverse, validate_batch, DirectoryService};
use crate::digest::B3Digest;
use crate::directory::Directory;
use crate::errors::Error;
use crate::proto;

#[derive(Clone)]
pub struct SledDirectoryService {
    db: ::sled::Db,
}

impl SledDirectoryService {
    pub fn open(path: &Path) -> Result<Self, Error> {
        Ok(SledDirectoryService { db: ::sled::open(path)? })
    }

    /// A temporary database, gone when dropped (tests).
    pub fn temporary() -> Result<Self, Error> {
        Ok(SledDirectoryService { db: ::sled::Config::new().temporary(true).open()? })
    }

    fn load(&self, digest: &B3Digest) -> Result<Option<Directory>, Error> {
        let Some(raw) = self.db.get(digest.as_bytes())? else { return Ok(None) };
        if B3Digest::of(&raw) != *digest {
            tracing::error!(%digest, "stored directory failed its hash check");
            return Err(Error::Corrupt(format!("stored directory {digest} does not match its digest")));
        }
        let p = proto::Directory::decode(&raw[..]).map_err(|e| Error::Corrupt(format!("directory {digest}: {e}")))?;
        Ok(Some(Directory::try_from(p).map_err(|e| Error::Corrupt(format!("directory {digest}: {e}")))?))
    }
}

#[async_trait::async_trait]
impl DirectoryService for SledDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>, Error> {
        let this = self.clone();
        let digest = *digest;
        tokio::task::spawn_blocking(move || this.load(&digest)).await.map_err(|e| Error::Storage(e.to_string()))?
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory, Error>> {
        traverse(self.clone(), *root)
    }

    async fn put_batch(&self, directories: Vec<Directory>) -> Result<B3Digest, Error> {
        let checked = validate_batch(directories, |d| {
            let this = self.clone();
            async move { Ok(this.get(&d).await?.map(|dir| dir.size())) }
        })
        .await?;
        let root = checked.last().expect("non-empty").0;
        let mut batch = ::sled::Batch::default();
        for (d, dir) in &checked {
            batch.insert(&d.as_bytes()[..], dir.to_proto().encode_to_vec());
        }
        // one atomic batch, flushed before we answer: all or nothing, durable
        self.db.apply_batch(batch)?;
        self.db.flush_async().await?;
        Ok(root)
    }
}
