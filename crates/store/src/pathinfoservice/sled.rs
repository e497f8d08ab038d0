//! `sled:///path` — path infos in an embedded sled database, keyed by the
//! 20-byte store path digest, stored in their protobuf encoding. Tombstones
//! of deleted paths are in the tree `deleted`: when (u64 milliseconds since
//! the epoch, big-endian), then the protobuf. A delete writes the
//! tombstone before it removes the entry (a crash between leaves both: the
//! path stays registered), and no sled transactions are used (with
//! concurrent flushes they deadlock).

use std::path::Path;
use std::time::SystemTime;

use futures::stream::BoxStream;
use futures::StreamExt;
use prost::Message;
use snix_castore::directoryservice::flush_durably;
use snix_castore::unix_ms;

use super::{ChangeFeed, DeletedPathInfo, PathInfoService, Watch};
use crate::errors::Error;
use crate::pathinfo::PathInfo;
use crate::proto;

#[derive(Clone)]
pub struct SledPathInfoService {
    db: ::sled::Db,
    deleted: ::sled::Tree,
    /// (this process is the only one with the database open: every change
    /// goes through here)
    changes: ChangeFeed,
}

fn decode(key: &[u8], raw: &[u8]) -> Result<PathInfo, Error> {
    let corrupt = |reason: String| Error::CorruptStored { key: nix_compat::nixbase32::encode(key), reason };
    let p = proto::PathInfo::decode(raw).map_err(|e| corrupt(e.to_string()))?;
    let info = PathInfo::try_from(p).map_err(|e| corrupt(e.to_string()))?;
    if info.store_path.digest()[..] != key[..] {
        return Err(corrupt(format!("it is the path info of {}", info.store_path)));
    }
    Ok(info)
}

fn decode_tombstone(key: &[u8], raw: &[u8]) -> Result<DeletedPathInfo, Error> {
    let corrupt = || Error::CorruptStored { key: nix_compat::nixbase32::encode(key), reason: "short tombstone".into() };
    let (when, info) = raw.split_at_checked(8).ok_or_else(corrupt)?;
    let when = u64::from_be_bytes(when.try_into().map_err(|_| corrupt())?);
    Ok(DeletedPathInfo { info: decode(key, info)?, deleted: unix_ms::to_time(when) })
}

/// Sends the decoded entries of `tree` into a stream, from a blocking task.
fn stream_tree<T: Send + 'static>(
    tree: ::sled::Tree,
    decode: fn(&[u8], &[u8]) -> Result<T, Error>,
) -> BoxStream<'static, Result<T, Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::task::spawn_blocking(move || {
        for kv in tree.iter() {
            let r = kv.map_err(Error::from).and_then(|(k, v)| decode(&k, &v));
            if tx.blocking_send(r).is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

impl SledPathInfoService {
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::from_db(::sled::open(path)?)
    }

    pub fn temporary() -> Result<Self, Error> {
        Self::from_db(::sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: ::sled::Db) -> Result<Self, Error> {
        let deleted = db.open_tree("deleted")?;
        Ok(SledPathInfoService { db, deleted, changes: ChangeFeed::default() })
    }
}

#[async_trait::async_trait]
impl PathInfoService for SledPathInfoService {
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || match db.get(digest)? {
            Some(raw) => decode(&digest, &raw).map(Some),
            None => Ok(None),
        })
        .await?
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo, Error> {
        let key = *info.store_path.digest();
        self.db.insert(key, info.to_proto().encode_to_vec())?;
        self.deleted.remove(key)?;
        // durable before we say it is registered
        flush_durably(&self.db).await?;
        self.changes.registered(&info.store_path).await;
        Ok(info)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo, Error>> {
        stream_tree((*self.db).clone(), decode)
    }

    async fn delete(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        let Some(raw) = self.db.get(digest)? else { return Ok(None) };
        let mut tomb = unix_ms::from_time(SystemTime::now()).to_be_bytes().to_vec();
        tomb.extend_from_slice(&raw);
        self.deleted.insert(digest, tomb)?;
        // only what we read: a put since then wins
        if self.db.compare_and_swap(digest, Some(&raw), None::<&[u8]>)?.is_err() {
            return Ok(None);
        }
        flush_durably(&self.db).await?;
        let info = decode(&digest, &raw)?;
        self.changes.deleted(&info.store_path).await;
        Ok(Some(info))
    }

    fn list_deleted(&self) -> BoxStream<'static, Result<DeletedPathInfo, Error>> {
        stream_tree(self.deleted.clone(), decode_tombstone)
    }

    async fn purge_deleted(&self, digest: [u8; 20], deleted_before: SystemTime) -> Result<bool, Error> {
        let Some(raw) = self.deleted.get(digest)? else { return Ok(false) };
        let when = raw.get(..8).and_then(|w| Some(u64::from_be_bytes(w.try_into().ok()?))).unwrap_or(0);
        if when >= unix_ms::from_time(deleted_before) {
            return Ok(false);
        }
        if self.deleted.compare_and_swap(digest, Some(raw), None::<&[u8]>)?.is_err() {
            return Ok(false);
        }
        flush_durably(&self.db).await?;
        Ok(true)
    }

    async fn watch(&self, confirms: bool) -> Result<Watch, Error> {
        Ok(self.changes.subscribe(confirms))
    }
}
