//! Store paths known not to be there, and the watch that keeps that true.
//!
//! A build asks for many paths that do not exist, so misses must be cheap;
//! but a path registered after a miss must be visible through the mount as
//! once its registration returns (Nix's overlay store checks the lower
//! store's metadata, then its files). So a miss is kept — by us, and by the
//! kernel as a negative entry — only while a watch of the path-info service
//! is live: every change it reports drops the name here and in the kernel
//! (`invalidate`), and then we confirm it to the daemon, which holds the
//! registration until we have (for a few seconds at most; then it ends our
//! watch, and we keep no miss until a new one is live). Without a watch (an
//! older daemon, or one that went away) no miss is kept at all, and every
//! lookup asks the daemon.
//!
//! A lookup takes a [`Ticket`] before it asks the daemon and keeps its miss
//! only if no change came in meanwhile, so an answer older than a change is
//! never kept. The kernel cannot keep a stale negative entry either: it
//! applies an invalidation of a name only after a lookup of that name in
//! progress has finished (both hold the directory's lock).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use snix_store::pathinfoservice::{Applied, PathInfoService, Watch};

/// Misses kept at most; beyond this, misses are answered but not kept.
pub const MAX_MISSES: usize = 65_536;

#[derive(Default)]
pub struct Misses {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    watching: bool,
    /// Bumped by every change and every start or end of the watch.
    generation: u64,
    names: HashSet<Vec<u8>>,
}

/// When a lookup started, as far as changes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

impl Misses {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("miss cache lock")
    }

    /// `name` is a kept miss: not there, and nothing registered it since.
    pub fn is_miss(&self, name: &[u8]) -> bool {
        let i = self.lock();
        i.watching && i.names.contains(name)
    }

    /// Taken before asking the daemon about a name.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    /// Keeps the miss of `name` found by a lookup that began at `ticket`.
    /// False when it may not be kept (no watch, a change since, full): the
    /// kernel must then not keep it either.
    pub fn record(&self, name: &[u8], ticket: Ticket) -> bool {
        let mut i = self.lock();
        if !i.watching || i.generation != ticket.0 || i.names.len() >= MAX_MISSES {
            return false;
        }
        i.names.insert(name.to_vec());
        true
    }

    /// `name` was registered or unregistered.
    pub fn changed(&self, name: &[u8]) {
        let mut i = self.lock();
        i.generation += 1;
        i.names.remove(name);
    }

    /// The watch started or ended. Returns the names the kernel may still
    /// keep as misses (all misses are forgotten either way).
    pub fn set_watching(&self, watching: bool) -> Vec<Vec<u8>> {
        let mut i = self.lock();
        i.generation += 1;
        i.watching = watching;
        i.names.drain().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Watches `infos` for as long as the process runs, keeping `misses` true;
/// `invalidate` (called on a thread of its own: it may wait for a lookup in
/// progress) drops a name's entry from the kernel. Returns once the first
/// attempt to watch succeeded or failed.
pub async fn watch_changes(
    infos: Arc<dyn PathInfoService>,
    misses: Arc<Misses>,
    mut invalidate: impl FnMut(&[u8]) + Send + 'static,
) {
    let (tx, rx) = std::sync::mpsc::channel::<Invalidation>();
    std::thread::Builder::new()
        .name("fuse-invalidate".into())
        .spawn(move || {
            for Invalidation { name, confirm } in rx {
                invalidate(&name);
                if let Some((applied, sequence)) = confirm {
                    applied.confirm(sequence);
                }
            }
        })
        .expect("starting the invalidation thread");
    let drop_all = |misses: &Misses, watching: bool, tx: &std::sync::mpsc::Sender<Invalidation>| {
        for name in misses.set_watching(watching) {
            let _ = tx.send(Invalidation { name, confirm: None });
        }
    };
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut first = Some(first_tx);
        let mut retry = Duration::from_secs(1);
        let mut said_unsupported = false;
        loop {
            let watch = infos.watch(true).await;
            if watch.is_ok() {
                drop_all(&misses, true, &tx);
            }
            // the first attempt is over: watching, or not
            if let Some(f) = first.take() {
                let _ = f.send(());
            }
            match watch {
                Ok(watch) => {
                    tracing::info!("watching the store's registrations: misses are kept until a path appears");
                    retry = Duration::from_secs(1);
                    let why = follow(watch, &misses, &tx).await;
                    drop_all(&misses, false, &tx);
                    tracing::warn!(reason = %why, "the watch of the store's registrations ended; misses are not kept until it is back");
                }
                Err(snix_store::Error::Unsupported(why)) => {
                    if !said_unsupported {
                        tracing::info!(%why, "no watch of the store's registrations: every miss asks the daemon");
                        said_unsupported = true;
                    }
                    retry = Duration::from_secs(60);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?retry, "cannot watch the store's registrations; misses are not kept")
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(Duration::from_secs(60));
        }
    });
    let _ = first_rx.await;
}

/// A name to drop from the kernel, then the change to confirm.
struct Invalidation {
    name: Vec<u8>,
    confirm: Option<(Applied, u64)>,
}

/// Applies the watch's changes until they end; returns why they did.
async fn follow(watch: Watch, misses: &Misses, tx: &std::sync::mpsc::Sender<Invalidation>) -> String {
    let Watch { mut changes, applied } = watch;
    loop {
        match changes.next().await {
            Some(Ok(c)) => {
                let name = c.store_path.basename().into_bytes();
                misses.changed(&name);
                let confirm = applied.clone().map(|a| (a, c.sequence));
                let _ = tx.send(Invalidation { name, confirm });
            }
            Some(Err(e)) => return e.to_string(),
            None => return "the daemon ended it".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_kept_only_while_watching_and_without_a_change_in_between() {
        let m = Misses::default();
        let t = m.ticket();
        assert!(!m.record(b"a", t), "kept a miss without a watch");
        assert!(m.set_watching(true).is_empty());
        let t = m.ticket();
        assert!(m.record(b"a", t));
        assert!(m.is_miss(b"a"));

        // a lookup that began before a change does not keep its miss
        let t = m.ticket();
        m.changed(b"other");
        assert!(!m.record(b"b", t));
        assert!(!m.is_miss(b"b"));
        assert!(m.is_miss(b"a"), "a change of another name dropped a miss");

        m.changed(b"a");
        assert!(!m.is_miss(b"a"));

        let t = m.ticket();
        assert!(m.record(b"c", t));
        assert_eq!(m.set_watching(false), vec![b"c".to_vec()]);
        assert!(!m.is_miss(b"c"));
        assert!(!m.record(b"c", m.ticket()));
    }

    #[test]
    fn a_full_cache_keeps_no_more() {
        let m = Misses::default();
        m.set_watching(true);
        for i in 0..MAX_MISSES {
            assert!(m.record(i.to_string().as_bytes(), m.ticket()));
        }
        assert!(!m.record(b"one more", m.ticket()));
        assert_eq!(m.len(), MAX_MISSES);
    }
}
