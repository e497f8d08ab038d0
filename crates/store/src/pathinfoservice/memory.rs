//! `memory://` — path infos in a map; volatile, for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use futures::stream::BoxStream;
use futures::StreamExt;

use super::{ChangeFeed, DeletedPathInfo, PathInfoService, Watch};
use crate::errors::Error;
use crate::pathinfo::PathInfo;

#[derive(Default)]
struct Maps {
    infos: BTreeMap<[u8; 20], PathInfo>,
    deleted: BTreeMap<[u8; 20], DeletedPathInfo>,
}

#[derive(Clone, Default)]
pub struct MemoryPathInfoService {
    maps: Arc<RwLock<Maps>>,
    changes: ChangeFeed,
}

#[async_trait::async_trait]
impl PathInfoService for MemoryPathInfoService {
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        Ok(self.maps.read().expect("poisoned").infos.get(&digest).cloned())
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo, Error> {
        {
            let mut m = self.maps.write().expect("poisoned");
            m.deleted.remove(info.store_path.digest());
            m.infos.insert(*info.store_path.digest(), info.clone());
        }
        self.changes.registered(&info.store_path).await;
        Ok(info)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo, Error>> {
        let all: Vec<_> = self.maps.read().expect("poisoned").infos.values().cloned().map(Ok).collect();
        futures::stream::iter(all).boxed()
    }

    async fn delete(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        let info = {
            let mut m = self.maps.write().expect("poisoned");
            let Some(info) = m.infos.remove(&digest) else { return Ok(None) };
            m.deleted.insert(digest, DeletedPathInfo { info: info.clone(), deleted: SystemTime::now() });
            info
        };
        self.changes.deleted(&info.store_path).await;
        Ok(Some(info))
    }

    fn list_deleted(&self) -> BoxStream<'static, Result<DeletedPathInfo, Error>> {
        let all: Vec<_> = self.maps.read().expect("poisoned").deleted.values().cloned().map(Ok).collect();
        futures::stream::iter(all).boxed()
    }

    async fn purge_deleted(&self, digest: [u8; 20], deleted_before: SystemTime) -> Result<bool, Error> {
        let mut m = self.maps.write().expect("poisoned");
        match m.deleted.get(&digest) {
            Some(d) if d.deleted < deleted_before => Ok(m.deleted.remove(&digest).is_some()),
            _ => Ok(false),
        }
    }

    async fn watch(&self, confirms: bool) -> Result<Watch, Error> {
        Ok(self.changes.subscribe(confirms))
    }
}
