//! The feed of changes an in-process backend (memory, sled) keeps: every
//! put and delete, numbered, sent to whoever watches. A watcher that
//! confirms (a FUSE mount, which drops its cached misses) holds up the put
//! or delete until it has applied the change, for at most
//! [`CONFIRM_WITHIN`]; one that does not confirm in time, or falls behind,
//! gets an error and its stream ends (it must then distrust what it
//! cached), and nobody waits for it again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nix_compat::store_path::StorePath;
use tokio::sync::{broadcast, oneshot, watch};

use super::{Applied, PathChange, Watch};
use crate::errors::Error;

/// Changes a watcher may be behind by before it is cut off.
const BACKLOG: usize = 4096;

/// How long a put or delete waits for confirming watchers.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ChangeFeed(Arc<Feed>);

struct Feed {
    changes: broadcast::Sender<PathChange>,
    /// The last sequence number given, and the confirming watchers; one
    /// lock, so a watcher's start and the changes it sees agree.
    state: Mutex<State>,
    confirm_within: Duration,
}

#[derive(Default)]
struct State {
    sequence: u64,
    confirming: Vec<Confirming>,
}

struct Confirming {
    /// The first change this watcher sees.
    from: u64,
    applied: watch::Receiver<u64>,
    /// Fired to end the watcher's stream with an error.
    cut_off: Arc<Mutex<Option<oneshot::Sender<Error>>>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed::with_confirm_within(CONFIRM_WITHIN)
    }
}

impl ChangeFeed {
    pub fn with_confirm_within(confirm_within: Duration) -> Self {
        ChangeFeed(Arc::new(Feed { changes: broadcast::channel(BACKLOG).0, state: Mutex::default(), confirm_within }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().expect("change feed lock")
    }

    pub async fn registered(&self, store_path: &StorePath) {
        self.send(store_path, false).await
    }

    pub async fn deleted(&self, store_path: &StorePath) {
        self.send(store_path, true).await
    }

    /// Sends the change, then waits until every confirming watcher that
    /// sees it has applied it, or is cut off.
    async fn send(&self, store_path: &StorePath, deleted: bool) {
        let (sequence, waits) = {
            let mut s = self.lock();
            s.sequence += 1;
            let sequence = s.sequence;
            // no watcher is no error
            let _ = self.0.changes.send(PathChange { store_path: store_path.clone(), deleted, sequence });
            // those gone (their Applied dropped) are forgotten
            s.confirming.retain(|c| c.applied.has_changed().is_ok());
            let waits: Vec<_> = s
                .confirming
                .iter()
                .filter(|c| c.from <= sequence)
                .map(|c| (c.applied.clone(), c.cut_off.clone()))
                .collect();
            (sequence, waits)
        };
        let deadline = tokio::time::Instant::now() + self.0.confirm_within;
        let waits = waits.into_iter().map(|(mut applied, cut_off)| async move {
            match tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= sequence)).await {
                // confirmed, or the watcher went away: either way not ours to wait for
                Ok(_) => {}
                Err(_) => {
                    let within = self.0.confirm_within;
                    tracing::warn!(
                        change = sequence,
                        ?within,
                        "a watcher did not confirm a change in time; its watch is ended"
                    );
                    if let Some(tx) = cut_off.lock().expect("cut-off lock").take() {
                        let _ = tx.send(Error::WatcherTooSlow(within));
                    }
                    self.lock().confirming.retain(|c| !Arc::ptr_eq(&c.cut_off, &cut_off));
                }
            }
        });
        futures::future::join_all(waits).await;
    }

    /// Every change from now on; with `confirms`, each put or delete waits
    /// for [`Watch::applied`] to reach its change.
    pub fn subscribe(&self, confirms: bool) -> Watch {
        let (cut_tx, cut_rx) = oneshot::channel::<Error>();
        let (rx, applied) = {
            let mut s = self.lock();
            let rx = self.0.changes.subscribe();
            let applied = confirms.then(|| {
                let now = s.sequence;
                let (tx, applied) = watch::channel(now);
                s.confirming.push(Confirming { from: now + 1, applied, cut_off: Arc::new(Mutex::new(Some(cut_tx))) });
                Applied::new(tx)
            });
            (rx, applied)
        };
        // a watcher not confirming is never cut off for it
        let cut_rx = if confirms { Some(cut_rx) } else { None };
        let changes = futures::stream::unfold(Some((rx, cut_rx)), |state| async move {
            let (mut rx, mut cut_rx) = state?;
            let received = match cut_rx.as_mut() {
                Some(cut) => tokio::select! {
                    biased;
                    e = cut => match e {
                        Ok(e) => return Some((Err(e), None)),
                        Err(_) => {
                            cut_rx = None;
                            rx.recv().await
                        }
                    },
                    r = rx.recv() => r,
                },
                None => rx.recv().await,
            };
            match received {
                Ok(change) => Some((Ok(change), Some((rx, cut_rx)))),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((Err(Error::WatcherBehind(n)), None)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed();
        Watch { changes, applied }
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
        feed.registered(&path(0)).await; // before anyone watches: nobody sees it
        let mut w = feed.subscribe(false);
        feed.registered(&path(1)).await;
        feed.deleted(&path(1)).await;
        let a = w.changes.next().await.unwrap().unwrap();
        let b = w.changes.next().await.unwrap().unwrap();
        assert_eq!((a.store_path, a.deleted, b.deleted), (path(1), false, true));
        assert_eq!(b.sequence, a.sequence + 1);

        for i in 0..=BACKLOG {
            feed.registered(&path(i as u8)).await;
        }
        assert!(matches!(w.changes.next().await, Some(Err(Error::WatcherBehind(_)))));
        assert!(w.changes.next().await.is_none(), "the stream goes on after falling behind");
    }

    #[tokio::test]
    async fn a_put_returns_once_confirming_watchers_applied_it() {
        let feed = ChangeFeed::with_confirm_within(Duration::from_secs(30));
        let mut w = feed.subscribe(true);
        let applied = w.applied.clone().unwrap();
        let put = tokio::spawn({
            let feed = feed.clone();
            async move { feed.registered(&path(1)).await }
        });
        let c = w.changes.next().await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!put.is_finished(), "the put returned before the watcher confirmed");
        applied.confirm(c.sequence);
        tokio::time::timeout(Duration::from_secs(5), put).await.expect("the put returns once confirmed").unwrap();

        // a watcher that stops confirming holds nothing up once it is gone
        drop(w);
        drop(applied);
        tokio::time::timeout(Duration::from_secs(5), feed.registered(&path(2))).await.expect("nobody to wait for");
    }

    #[tokio::test]
    async fn a_watcher_that_does_not_confirm_in_time_is_cut_off() {
        let feed = ChangeFeed::with_confirm_within(Duration::from_millis(100));
        let mut slow = feed.subscribe(true);
        let mut other = feed.subscribe(false);
        let started = std::time::Instant::now();
        feed.registered(&path(1)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        // cut off: the error comes before what it did not take yet
        assert!(matches!(slow.changes.next().await, Some(Err(Error::WatcherTooSlow(_)))));
        assert!(slow.changes.next().await.is_none());
        // the others go on, and nobody waits for the one cut off
        let started = std::time::Instant::now();
        feed.registered(&path(2)).await;
        assert!(started.elapsed() < Duration::from_millis(100), "waited for a watcher cut off");
        assert_eq!(other.changes.next().await.unwrap().unwrap().store_path, path(1));
        assert_eq!(other.changes.next().await.unwrap().unwrap().store_path, path(2));
    }
}
