//! `sled:///path` — directories in an embedded sled database, keyed by digest,
//! stored in their canonical encoding and checked against the key on read.
//! A second tree, `written`, holds when each was last written (u64
//! milliseconds since the epoch, big-endian); both change in one
//! transaction. A directory without one (stored before there were any)
//! counts as written at the epoch.

use std::path::Path;
use std::time::SystemTime;

use futures::stream::BoxStream;
use futures::StreamExt;
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

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

fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
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
        let referred = referred_outside(&checked);
        let encoded: Vec<(B3Digest, Vec<u8>)> =
            checked.iter().map(|(d, dir)| (*d, dir.to_proto().encode_to_vec())).collect();
        // one transaction, flushed before we answer: all or nothing, durable
        (&*self.db, &self.written)
            .transaction(|(dirs, written)| {
                for (d, raw) in &encoded {
                    dirs.insert(&d.as_bytes()[..], &raw[..])?;
                    written.insert(&d.as_bytes()[..], &now[..])?;
                }
                for d in &referred {
                    if dirs.get(d.as_bytes())?.is_some() {
                        written.insert(&d.as_bytes()[..], &now[..])?;
                    }
                }
                Ok::<_, ConflictableTransactionError<Error>>(())
            })
            .map_err(tx_error)?;
        self.db.flush_async().await?;
        Ok(root)
    }

    fn list(&self) -> BoxStream<'static, Result<StoredDirectory, Error>> {
        let this = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            for kv in this.db.iter() {
                let r = kv.map_err(Error::from).and_then(|(k, _)| {
                    let digest = B3Digest::try_from(&k[..])?;
                    let written = this.written.get(&k)?.and_then(|t| Some(u64::from_be_bytes(t[..].try_into().ok()?)));
                    Ok(StoredDirectory { digest, written: unix_ms::to_time(written.unwrap_or(0)) })
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
        let key = *digest.as_bytes();
        let deleted = (&*self.db, &self.written)
            .transaction(|(dirs, written)| {
                let t = written.get(key)?.and_then(|t| Some(u64::from_be_bytes(t[..].try_into().ok()?))).unwrap_or(0);
                if t >= since || dirs.get(key)?.is_none() {
                    return Ok(false);
                }
                dirs.remove(&key[..])?;
                written.remove(&key[..])?;
                Ok::<_, ConflictableTransactionError<Error>>(true)
            })
            .map_err(tx_error)?;
        if deleted {
            self.db.flush_async().await?;
        }
        Ok(deleted)
    }
}
