//! `sled:///path` — path infos in an embedded sled database, keyed by the
//! 20-byte store path digest, stored in their protobuf encoding.

use std::path::Path;

use futures::stream::BoxStream;
use futures::StreamExt;
use prost::Message;

use crate::errors::Error;

use super::PathInfoService;
use crate::pathinfo::PathInfo;
use crate::proto;

#[derive(Clone)]
pub struct SledPathInfoService {
    db: ::sled::Db,
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

impl SledPathInfoService {
    pub fn open(path: &Path) -> Result<Self, Error> {
        Ok(SledPathInfoService { db: ::sled::open(path)? })
    }

    pub fn temporary() -> Result<Self, Error> {
        Ok(SledPathInfoService { db: ::sled::Config::new().temporary(true).open()? })
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
        self.db.insert(info.store_path.digest(), info.to_proto().encode_to_vec())?;
        // durable before we say it is registered
        self.db.flush_async().await?;
        Ok(info)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo, Error>> {
        let db = self.db.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::task::spawn_blocking(move || {
            for kv in db.iter() {
                let r = kv.map_err(Error::from).and_then(|(k, v)| decode(&k, &v));
                if tx.blocking_send(r).is_err() {
                    break;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }
}
