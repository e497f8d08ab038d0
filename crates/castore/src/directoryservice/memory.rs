//! `memory://` — directories in a map; volatile, for tests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use futures::stream::BoxStream;
use futures::StreamExt;

use super::{referred_outside, traverse, validate_batch, DirectoryService, StoredDirectory};
use crate::digest::B3Digest;
use crate::directory::Directory;
use crate::errors::Error;

/// Each directory, with when it was last written.
#[derive(Clone, Default)]
pub struct MemoryDirectoryService {
    dirs: Arc<RwLock<HashMap<B3Digest, (Directory, SystemTime)>>>,
}

#[async_trait::async_trait]
impl DirectoryService for MemoryDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>, Error> {
        Ok(self.dirs.read().expect("poisoned").get(digest).map(|(d, _)| d.clone()))
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory, Error>> {
        traverse(self.clone(), *root)
    }

    async fn put_batch(&self, directories: Vec<Directory>) -> Result<B3Digest, Error> {
        let dirs = self.dirs.clone();
        let checked = validate_batch(directories, |d| {
            let size = dirs.read().expect("poisoned").get(&d).map(|(dir, _)| dir.size());
            async move { Ok(size) }
        })
        .await?;
        let root = checked.last().expect("non-empty").0;
        let now = SystemTime::now();
        let mut map = self.dirs.write().expect("poisoned");
        for d in referred_outside(&checked) {
            if let Some((_, t)) = map.get_mut(&d) {
                *t = now;
            }
        }
        for (d, dir) in checked {
            map.insert(d, (dir, now));
        }
        Ok(root)
    }

    fn list(&self) -> BoxStream<'static, Result<StoredDirectory, Error>> {
        let all: Vec<_> = self
            .dirs
            .read()
            .expect("poisoned")
            .iter()
            .map(|(d, (_, t))| Ok(StoredDirectory { digest: *d, written: *t }))
            .collect();
        futures::stream::iter(all).boxed()
    }

    async fn delete(&self, digest: &B3Digest, unless_written_since: SystemTime) -> Result<bool, Error> {
        let mut map = self.dirs.write().expect("poisoned");
        match map.get(digest) {
            Some((_, t)) if *t < unless_written_since => Ok(map.remove(digest).is_some()),
            _ => Ok(false),
        }
    }
}
