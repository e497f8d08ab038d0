//! A near/far pair: reads try near first; on a miss the whole tree under the
//! directory is fetched from far in one recursive request and stored near.
//! Writes go to far (the authoritative side).

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::DirectoryService;
use crate::digest::B3Digest;
use crate::directory::Directory;
use crate::errors::Error;

#[derive(Clone)]
pub struct CombinedDirectoryService<N, F> {
    near: N,
    far: F,
}

impl<N: DirectoryService + Clone, F: DirectoryService + Clone> CombinedDirectoryService<N, F> {
    pub fn new(near: N, far: F) -> Self {
        CombinedDirectoryService { near, far }
    }

    /// Fetches the tree under `digest` from far and stores it near.
    async fn fill(&self, digest: &B3Digest) -> Result<bool, Error> {
        let tree: Vec<Directory> = match self.far.get_recursive(digest).try_collect().await {
            Ok(t) => t,
            Err(Error::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if tree.is_empty() {
            return Ok(false);
        }
        self.near.put_batch(super::leaves_first(tree)).await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl<N: DirectoryService + Clone, F: DirectoryService + Clone> DirectoryService for CombinedDirectoryService<N, F> {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>, Error> {
        if let Some(d) = self.near.get(digest).await? {
            return Ok(Some(d));
        }
        if !self.fill(digest).await? {
            return Ok(None);
        }
        self.near.get(digest).await
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory, Error>> {
        let this = self.clone();
        let root = *root;
        async_stream::try_stream! {
            if this.near.get(&root).await?.is_none() && !this.fill(&root).await? {
                Err(Error::NotFound(format!("directory {root}")))?;
            }
            let mut s = this.near.get_recursive(&root);
            while let Some(d) = s.next().await {
                yield d?;
            }
        }
        .boxed()
    }

    async fn put_batch(&self, directories: Vec<Directory>) -> Result<B3Digest, Error> {
        self.far.put_batch(directories).await
    }

    /// What the far (authoritative) side stores.
    fn list(&self) -> BoxStream<'static, Result<super::StoredDirectory, Error>> {
        self.far.list()
    }

    /// From both sides; whether the far side removed it.
    async fn delete(&self, digest: &B3Digest, unless_written_since: std::time::SystemTime) -> Result<bool, Error> {
        self.near.delete(digest, unless_written_since).await?;
        self.far.delete(digest, unless_written_since).await
    }
}
