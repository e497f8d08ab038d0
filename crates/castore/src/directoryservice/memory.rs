//! `memory://` — directories in a map; volatile, for tests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::stream::BoxStream;

use super::{traverse, validate_batch, DirectoryService};
use crate::digest::B3Digest;
use crate::directory::Directory;
use crate::errors::Error;

#[derive(Clone, Default)]
pub struct MemoryDirectoryService {
    dirs: Arc<RwLock<HashMap<B3Digest, Directory>>>,
}

#[async_trait::async_trait]
impl DirectoryService for MemoryDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>, Error> {
        Ok(self.dirs.read().expect("poisoned").get(digest).cloned())
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory, Error>> {
        traverse(self.clone(), *root)
    }

    async fn put_batch(&self, directories: Vec<Directory>) -> Result<B3Digest, Error> {
        let dirs = self.dirs.clone();
        let checked = validate_batch(directories, |d| {
            let size = dirs.read().expect("poisoned").get(&d).map(Directory::size);
            async move { Ok(size) }
        })
        .await?;
        let root = checked.last().expect("non-empty").0;
        let mut map = self.dirs.write().expect("poisoned");
        for (d, dir) in checked {
            map.insert(d, dir);
        }
        Ok(root)
    }
}
