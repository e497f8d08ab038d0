//! The daemon's cache of path infos, shared by all connections: a burst of
//! queries (`-qR`, `path-info -r`) needs one round trip per path. While a
//! watch of the store daemon's registrations is live (and confirming: the
//! store daemon holds a registration or deletion until we dropped the
//! entry), an entry stays until its path changes; without a watch (an older
//! store daemon, or one that went away) an entry lives a few seconds only.
//! Misses are never cached — a path may appear any time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nix_compat::store_path::StorePath;
use snix_store::pathinfoservice::{PathInfoService, Watch};
use snix_store::PathInfo;

const ENTRIES: usize = 65_536;
/// How long an entry is trusted without a watch.
const UNWATCHED_TTL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct InfoCache(Arc<Mutex<Inner>>);

struct Inner {
    entries: lru::LruCache<[u8; 20], (PathInfo, Instant)>,
    watching: bool,
    /// Bumped by every change and every start or end of the watch.
    generation: u64,
}

/// When a lookup started, as far as changes go.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl Default for InfoCache {
    fn default() -> Self {
        let entries = lru::LruCache::new(std::num::NonZeroUsize::new(ENTRIES).expect("non-zero"));
        InfoCache(Arc::new(Mutex::new(Inner { entries, watching: false, generation: 0 })))
    }
}

impl InfoCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("path info cache lock")
    }

    /// The cached info of `p`, or a ticket to keep what a lookup finds.
    pub fn get(&self, p: &StorePath) -> Result<PathInfo, Ticket> {
        let mut c = self.lock();
        let watching = c.watching;
        match c.entries.get(p.digest()) {
            Some((i, at)) if i.store_path == *p && (watching || at.elapsed() < UNWATCHED_TTL) => Ok(i.clone()),
            _ => Err(Ticket(c.generation)),
        }
    }

    /// Keeps what a lookup that began at `ticket` found, unless a change
    /// came in meanwhile (its answer may be older than the change).
    pub fn keep(&self, info: &PathInfo, ticket: Ticket) {
        let mut c = self.lock();
        if c.generation == ticket.0 {
            c.entries.put(*info.store_path.digest(), (info.clone(), Instant::now()));
        }
    }

    /// Keeps what this daemon just stored.
    pub fn remember(&self, info: &PathInfo) {
        self.lock().entries.put(*info.store_path.digest(), (info.clone(), Instant::now()));
    }

    pub fn forget(&self, p: &StorePath) {
        let mut c = self.lock();
        c.generation += 1;
        c.entries.pop(p.digest());
    }

    fn set_watching(&self, watching: bool) {
        let mut c = self.lock();
        c.generation += 1;
        c.watching = watching;
        // what was fetched before the watch began may be stale already
        c.entries.clear();
    }

    /// Follows the store daemon's registrations for as long as the process
    /// runs (spawned; needs a Tokio runtime), reconnecting when the watch
    /// ends.
    pub fn watch(&self, infos: Arc<dyn PathInfoService>) {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut retry = Duration::from_secs(1);
            loop {
                match infos.watch(true).await {
                    Ok(w) => {
                        cache.set_watching(true);
                        tracing::info!("watching the store's registrations: path infos are cached until they change");
                        retry = Duration::from_secs(1);
                        let why = cache.follow(w).await;
                        cache.set_watching(false);
                        tracing::warn!(reason = %why, "the watch of the store's registrations ended; path infos are cached for {UNWATCHED_TTL:?} until it is back");
                    }
                    Err(snix_store::Error::Unsupported(why)) => {
                        tracing::info!(%why, "no watch of the store's registrations: path infos are cached for {UNWATCHED_TTL:?}");
                        retry = Duration::from_secs(600);
                    }
                    Err(e) => tracing::warn!(error = %e, retry_in = ?retry, "cannot watch the store's registrations"),
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(60));
            }
        });
    }

    async fn follow(&self, w: Watch) -> String {
        let Watch { mut changes, applied } = w;
        loop {
            match changes.next().await {
                Some(Ok(c)) => {
                    self.forget(&c.store_path);
                    if let Some(a) = &applied {
                        a.confirm(c.sequence);
                    }
                }
                Some(Err(e)) => return e.to_string(),
                None => return "the store daemon ended it".to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snix_castore::Node;
    use snix_store::pathinfoservice::MemoryPathInfoService;

    fn info(n: u8, target: &str) -> PathInfo {
        PathInfo {
            store_path: StorePath::from_parts([n; 20], "p").unwrap(),
            node: Node::Symlink { target: target.to_string().into() },
            references: vec![],
            nar_size: 1,
            nar_sha256: [n; 32],
            signatures: vec![],
            deriver: None,
            ca: None,
        }
    }

    #[test]
    fn a_lookup_overlapping_a_change_keeps_nothing() {
        let c = InfoCache::default();
        let i = info(1, "a");
        let t = c.get(&i.store_path).unwrap_err();
        c.forget(&i.store_path);
        c.keep(&i, t);
        assert!(c.get(&i.store_path).is_err(), "kept an answer older than a change");
        let t = c.get(&i.store_path).unwrap_err();
        c.keep(&i, t);
        assert_eq!(c.get(&i.store_path).unwrap(), i);
    }

    #[tokio::test]
    async fn while_watching_a_change_reaches_the_cache_before_it_returns() {
        let infos: Arc<dyn PathInfoService> = Arc::new(MemoryPathInfoService::default());
        let c = InfoCache::default();
        c.watch(infos.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.lock().watching {
            assert!(Instant::now() < deadline, "no watch");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let old = info(1, "old");
        infos.put(old.clone()).await.unwrap();
        let t = c.get(&old.store_path).unwrap_err();
        c.keep(&old, t);
        assert_eq!(c.get(&old.store_path).unwrap(), old);
        let new = info(1, "new");
        infos.put(new.clone()).await.unwrap();
        // the put returned: the entry is gone already
        assert!(c.get(&new.store_path).is_err(), "a stale entry outlived the put");
    }
}
