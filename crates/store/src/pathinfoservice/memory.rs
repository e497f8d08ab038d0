//! `memory://` — path infos in a map; volatile, for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::stream::BoxStream;
use futures::StreamExt;

use crate::errors::Error;

use super::PathInfoService;
use crate::pathinfo::PathInfo;

#[derive(Clone, Default)]
pub struct MemoryPathInfoService {
    infos: Arc<RwLock<BTreeMap<[u8; 20], PathInfo>>>,
}

#[async_trait::async_trait]
impl PathInfoService for MemoryPathInfoService {
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>, Error> {
        Ok(self.infos.read().expect("poisoned").get(&digest).cloned())
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo, Error> {
        self.infos.write().expect("poisoned").insert(*info.store_path.digest(), info.clone());
        Ok(info)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo, Error>> {
        let all: Vec<_> = self.infos.read().expect("poisoned").values().cloned().map(Ok).collect();
        futures::stream::iter(all).boxed()
    }
}
