//! `sled:///path` — directories in an embedded sled database, keyed by digest,
//! stored in their canonical encoding and checked against the key on read.
//! A second tree, `written`, holds when each was last written (u64
//! milliseconds since the epoch, big-endian). A directory without one
//! (stored before there were any) counts as written at the epoch. No sled
//! transactions (with flushes running they deadlock): each tree's batch
//! is atomic, and a delete must win a compare-and-swap on the time it read.

use std::path::Path;
use std::time::SystemTime;

use futures::stream::BoxStream;
use futures::StreamExt;
use prost::Message;

use super::{referred_outside, traverse, validate_batch, DirectoryService, StoredDirectory};
use crate::digest::B3Digest;
use crate::directory::Directory;
use crate::errors::Error;
use crate::{proto, unix_ms};

#[derive(Clone)]
pub struct SledDirectoryService {
    db: ::sled::Db,
    written: ::sled::Tree,
}

/// Makes everything written to `db` so far durable. sled 0.34's
/// `flush_async` can hang for ever when several are in flight at once
/// (sled issues 1241, 1308), so this is its blocking `flush` on a blocking
/// thread, which is safe to call concurrently.
pub async fn flush_durably(db: &::sled::Db) -> ::sled::Result<()> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(flushed) => flushed.map(|_| ()),
        Err(e) => Err(::sled::Error::Io(std::io::Error::other(e))),
    }
}

fn written_at(raw: Option<sled::IVec>) -> u64 {
    raw.and_then(|t| Some(u64::from_be_bytes(t[..].try_into().ok()?))).unwrap_or(0)
}

impl SledDirectoryService {
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::from_db(::sled::open(path)?)
    }

    /// A temporary database, gone when dropped (tests).
    pub fn temporary() -> Result<Self, Error> {
        Self::from_db(::sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: ::sled::Db) -> Result<Self, Error> {
        let written = db.open_tree("written")?;
        Ok(SledDirectoryService { db, written })
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
        let now = unix_ms::from_time(SystemTime::now()).to_be_bytes();
        let mut batch = ::sled::Batch::default();
        let mut times = ::sled::Batch::default();
        for (d, dir) in &checked {
            batch.insert(&d.as_bytes()[..], dir.to_proto().encode_to_vec());
            times.insert(&d.as_bytes()[..], &now[..]);
        }
        for d in referred_outside(&checked) {
            times.insert(&d.as_bytes()[..], &now[..]);
        }
        // the times first: a collection that sees a directory sees it as new
        self.written.apply_batch(times)?;
        // one atomic batch, flushed before we answer: all or nothing, durable
        self.db.apply_batch(batch)?;
        flush_durably(&self.db).await?;
        Ok(root)
    }

    fn list(&self) -> BoxStream<'static, Result<StoredDirectory, Error>> {
        let this = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            for kv in this.db.iter() {
                let r = kv.map_err(Error::from).and_then(|(k, _)| {
                    let digest = B3Digest::try_from(&k[..])?;
                    Ok(StoredDirectory { digest, written: unix_ms::to_time(written_at(this.written.get(&k)?)) })
                });
                if tx.blocking_send(r).is_err() {
                    break;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }

    async fn delete(&self, digest: &B3Digest, unless_written_since: SystemTime) -> Result<bool, Error> {
        let since = unix_ms::from_time(unless_written_since);
        let this = self.clone();
        let key = *digest.as_bytes();
        let deleted = tokio::task::spawn_blocking(move || {
            let seen = this.written.get(key)?;
            if written_at(seen.clone()) >= since || !this.db.contains_key(key)? {
                return Ok::<_, Error>(false);
            }
            // a put refreshing it since we looked wins
            if this.written.compare_and_swap(key, seen, None::<&[u8]>)?.is_err() {
                return Ok(false);
            }
            let Some(raw) = this.db.remove(key)? else { return Ok(false) };
            // a put between the swap and the removal: keep its directory
            if this.written.get(key)?.is_some() {
                this.db.insert(key, raw)?;
                return Ok(false);
            }
            Ok(true)
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))??;
        if deleted {
            flush_durably(&self.db).await?;
        }
        Ok(deleted)
    }
}
