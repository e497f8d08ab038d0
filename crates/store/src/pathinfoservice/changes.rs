//! The feed of changes an in-process backend (memory, sled) keeps: every
//! put and delete, sent to whoever watches, before the call that made it
//! returns. A watcher that falls behind gets an error and its stream ends
//! (it must then distrust what it cached).

use futures::stream::BoxStream;
use futures::StreamExt;
use nix_compat::store_path::StorePath;
use tokio::sync::broadcast;

use super::PathChange;
use crate::errors::Error;

/// Changes a watcher may be behind by before it is cut off.
const BACKLOG: usize = 4096;

#[derive(Clone)]
pub struct ChangeFeed(broadcast::Sender<PathChange>);

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed(broadcast::channel(BACKLOG).0)
    }
}

impl ChangeFeed {
    pub fn registered(&self, store_path: &StorePath) {
        // no watcher is no error
        let _ = self.0.send(PathChange { store_path: store_path.clone(), deleted: false });
    }

    pub fn deleted(&self, store_path: &StorePath) {
        let _ = self.0.send(PathChange { store_path: store_path.clone(), deleted: true });
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> BoxStream<'static, Result<PathChange, Error>> {
        futures::stream::unfold(Some(self.0.subscribe()), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(change) => Some((Ok(change), Some(rx))),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((Err(Error::WatcherBehind(n)), None)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(n: u8) -> StorePath {
        StorePath::from_parts([n; 20], "p").unwrap()
    }

    #[tokio::test]
    async fn a_watcher_sees_changes_in_order_and_is_cut_off_when_behind() {
        let feed = ChangeFeed::default();
        feed.registered(&path(0)); // before anyone watches: nobody sees it
        let mut w = feed.subscribe();
        feed.registered(&path(1));
        feed.deleted(&path(1));
        let a = w.next().await.unwrap().unwrap();
        let b = w.next().await.unwrap().unwrap();
        assert_eq!((a.store_path, a.deleted, b.deleted), (path(1), false, true));

        for i in 0..=BACKLOG {
            feed.registered(&path(i as u8));
        }
        assert!(matches!(w.next().await, Some(Err(Error::WatcherBehind(_)))));
        assert!(w.next().await.is_none(), "the stream goes on after falling behind");
    }
}
