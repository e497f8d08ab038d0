//! Deleting paths and collecting garbage, through the service traits (so
//! over gRPC as well as embedded).
//!
//! A path is deleted by unregistering it, never while another registered
//! path refers to it. Its content is left to garbage collection, which marks
//! everything reachable from the registered paths and from the tombstones of
//! paths deleted less than the grace period ago, then sweeps directories and
//! blobs that are neither reachable nor written within the grace period.
//!
//! Why this never takes what a path still needs:
//! - a backend's `delete` refuses an object written at or after the cutoff,
//!   and writing an object that is already stored counts as writing it: an
//!   import or `nix copy` running during the collection (whose path is not
//!   registered yet, so not marked) keeps everything it wrote or reused;
//! - paths registered while the collection marks are marked in a second
//!   pass before anything is swept;
//! - only unreachable objects are ever deleted, one at a time, so a
//!   collection killed at any point leaves every registered path whole, and
//!   the next one picks up where it stopped;
//! - a deleted path's content stays for the grace period (its tombstone is a
//!   root): a reader that opened one of its files keeps reading.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use nix_compat::store_path::StorePath;
use snix_castore::blobservice::BlobService;
use snix_castore::directoryservice::DirectoryService;
use snix_castore::{B3Digest, Node};
use thiserror::Error;

use crate::errors::Error;
use crate::pathinfo::PathInfo;
use crate::pathinfoservice::PathInfoService;

/// Grace period of content written (or deleted) recently: one hour.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Chunk lists looked up at once while marking.
const MARK_CONCURRENCY: usize = 32;

#[derive(Debug, Error)]
pub enum GcError {
    #[error("path '{0}' is not valid")]
    NotValid(StorePath),
    /// Nix's wording, so Nix clients show what they would with Nix's daemon.
    #[error(
        "Cannot delete path '{path}' since it is still alive: '{referrer}' refers to it (delete both with --recursive)"
    )]
    Referenced { path: StorePath, referrer: StorePath },
    #[error(
        "the tree of registered path {path} is incomplete ({source}); not collecting garbage until it is repaired"
    )]
    Incomplete { path: StorePath, source: snix_castore::Error },
    #[error(transparent)]
    Store(#[from] Error),
    #[error(transparent)]
    Castore(#[from] snix_castore::Error),
    #[error("blob service: {0}")]
    Blobs(#[from] std::io::Error),
}

/// The paths that `delete` removes: `paths`, and with `recursive` every
/// registered path that refers to one of them, transitively. Refused if a
/// path outside that set refers to one inside it.
pub async fn paths_to_delete(
    infos: &dyn PathInfoService,
    paths: &[StorePath],
    recursive: bool,
) -> Result<Vec<StorePath>, GcError> {
    let all: Vec<PathInfo> = infos.list().try_collect().await?;
    let valid: HashSet<&StorePath> = all.iter().map(|i| &i.store_path).collect();
    let mut referrers: HashMap<&StorePath, Vec<&StorePath>> = HashMap::new();
    for i in &all {
        for r in i.references.iter().filter(|r| **r != i.store_path) {
            referrers.entry(r).or_default().push(&i.store_path);
        }
    }
    let mut set: HashSet<&StorePath> = HashSet::new();
    let mut queue: Vec<&StorePath> = Vec::new();
    for p in paths {
        let p = valid.get(p).ok_or_else(|| GcError::NotValid(p.clone()))?;
        if set.insert(p) {
            queue.push(p);
        }
    }
    while let Some(p) = queue.pop() {
        for r in referrers.get(p).into_iter().flatten() {
            if set.contains(r) {
                continue;
            }
            if !recursive {
                return Err(GcError::Referenced { path: p.clone(), referrer: (*r).clone() });
            }
            set.insert(r);
            queue.push(r);
        }
    }
    let mut out: Vec<StorePath> = set.into_iter().cloned().collect();
    out.sort_by_cached_key(StorePath::to_string);
    Ok(out)
}

/// Deletes `paths` (see [`paths_to_delete`]); returns what was deleted.
pub async fn delete_paths(
    infos: &dyn PathInfoService,
    paths: &[StorePath],
    recursive: bool,
) -> Result<Vec<StorePath>, GcError> {
    let doomed = paths_to_delete(infos, paths, recursive).await?;
    for p in &doomed {
        infos.delete(*p.digest()).await?;
    }
    Ok(doomed)
}

#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Keep only the closures of these paths (and delete every other
    /// registered path); `None`: delete no path, only sweep the castore.
    pub keep: Option<Vec<StorePath>>,
    /// Content written, and paths deleted, less than this long ago stay.
    pub grace: Duration,
    /// Report, delete nothing.
    pub dry_run: bool,
    /// Stop sweeping blobs once this many bytes are freed.
    pub max_freed: Option<u64>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { keep: None, grace: DEFAULT_GRACE, dry_run: false, max_freed: None }
    }
}

/// What a collection freed (or, dry, would free).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub paths: Vec<StorePath>,
    pub tombstones: usize,
    pub directories: usize,
    /// Chunk lists of blobs of several chunks.
    pub blobs: usize,
    pub chunks: usize,
    pub bytes: u64,
}

/// Everything reachable from some roots.
#[derive(Default)]
struct Live {
    directories: HashSet<B3Digest>,
    blobs: HashSet<B3Digest>,
}

impl Live {
    /// Adds what `root` reaches; blobs only by their own digest (their chunks
    /// are added by [`Live::add_chunks`]).
    async fn add(&mut self, path: &StorePath, root: &Node, dirs: &dyn DirectoryService) -> Result<(), GcError> {
        match root {
            Node::File { digest, .. } => {
                self.blobs.insert(*digest);
            }
            Node::Symlink { .. } => {}
            Node::Directory { digest, .. } => {
                if self.directories.contains(digest) {
                    return Ok(());
                }
                let mut tree = dirs.get_recursive(digest);
                while let Some(d) = tree.next().await {
                    let d = d.map_err(|source| GcError::Incomplete { path: path.clone(), source })?;
                    self.directories.insert(d.digest());
                    for (_, node) in d.nodes() {
                        if let Node::File { digest, .. } = node {
                            self.blobs.insert(*digest);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The chunks of every live blob are live too.
    async fn add_chunks(&mut self, blobs: &dyn BlobService) -> Result<(), GcError> {
        let list: Vec<B3Digest> = self.blobs.iter().copied().collect();
        let chunk_lists: Vec<Vec<B3Digest>> = futures::stream::iter(list)
            .map(|b| async move {
                let chunks = blobs.chunks(&b).await?;
                Ok::<_, std::io::Error>(chunks.unwrap_or_default().into_iter().map(|c| c.digest).collect())
            })
            .buffer_unordered(MARK_CONCURRENCY)
            .try_collect()
            .await?;
        self.blobs.extend(chunk_lists.into_iter().flatten());
        Ok(())
    }
}

/// The closure of `keep` among the registered `all`.
fn closure<'a>(all: &'a [PathInfo], keep: &[StorePath]) -> Result<HashSet<&'a StorePath>, GcError> {
    let by_path: HashMap<&StorePath, &PathInfo> = all.iter().map(|i| (&i.store_path, i)).collect();
    let mut out = HashSet::new();
    let mut queue: Vec<&StorePath> = Vec::new();
    for k in keep {
        let (p, _) = by_path.get_key_value(k).ok_or_else(|| GcError::NotValid(k.clone()))?;
        queue.push(p);
    }
    while let Some(p) = queue.pop() {
        if !out.insert(p) {
            continue;
        }
        if let Some(i) = by_path.get(p) {
            queue.extend(i.references.iter().filter_map(|r| by_path.get_key_value(r).map(|(k, _)| *k)));
        }
    }
    Ok(out)
}

/// Collects garbage (see the module's description). `progress` hears what
/// each phase does.
pub async fn collect_garbage(
    infos: &dyn PathInfoService,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
    opts: &GcOptions,
    mut progress: impl FnMut(&str),
) -> Result<GcStats, GcError> {
    let cutoff = SystemTime::now().checked_sub(opts.grace).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut stats = GcStats::default();
    let all: Vec<PathInfo> = infos.list().try_collect().await?;

    // paths outside the closure of what is kept
    let mut roots: Vec<(StorePath, Node)> = Vec::new();
    match &opts.keep {
        None => roots.extend(all.iter().map(|i| (i.store_path.clone(), i.node.clone()))),
        Some(keep) => {
            let kept = closure(&all, keep)?;
            for i in &all {
                if kept.contains(&i.store_path) {
                    roots.push((i.store_path.clone(), i.node.clone()));
                    continue;
                }
                stats.paths.push(i.store_path.clone());
                if !opts.dry_run {
                    infos.delete(*i.store_path.digest()).await?;
                } else if !opts.grace.is_zero() {
                    // deleted now, its content would stay for the grace period
                    roots.push((i.store_path.clone(), i.node.clone()));
                }
            }
            stats.paths.sort_by_cached_key(StorePath::to_string);
            progress(&format!("{} paths outside the closure of the {} kept", stats.paths.len(), keep.len()));
        }
    }

    // tombstones: recent ones keep their content, old ones go
    let tombstones: Vec<_> = infos.list_deleted().try_collect().await?;
    for t in tombstones {
        if t.deleted >= cutoff {
            roots.push((t.info.store_path, t.info.node));
        } else {
            stats.tombstones += 1;
            if !opts.dry_run {
                infos.purge_deleted(*t.info.store_path.digest(), cutoff).await?;
            }
        }
    }

    // mark
    let mut live = Live::default();
    for (path, node) in &roots {
        live.add(path, node, dirs).await?;
    }
    // paths registered while marking
    let marked: HashSet<&StorePath> = roots.iter().map(|(p, _)| p).collect();
    let late: Vec<PathInfo> =
        infos.list().try_filter(|i| futures::future::ready(!marked.contains(&i.store_path))).try_collect().await?;
    for i in &late {
        live.add(&i.store_path, &i.node, dirs).await?;
    }
    live.add_chunks(blobs).await?;
    progress(&format!(
        "{} roots reach {} directories and {} blobs and chunks",
        roots.len() + late.len(),
        live.directories.len(),
        live.blobs.len()
    ));

    // sweep
    let mut stored = dirs.list();
    while let Some(d) = stored.next().await {
        let d = d?;
        if live.directories.contains(&d.digest) || d.written >= cutoff {
            continue;
        }
        if opts.dry_run || dirs.delete(&d.digest, cutoff).await? {
            stats.directories += 1;
        }
    }
    let mut stored = blobs.list();
    while let Some(b) = stored.next().await {
        let b = b?;
        if live.blobs.contains(&b.digest) || b.written >= cutoff {
            continue;
        }
        if opts.max_freed.is_some_and(|max| stats.bytes >= max) {
            break;
        }
        let freed = if opts.dry_run { Some(b.stored_size) } else { blobs.delete(&b.digest, cutoff).await? };
        if let Some(n) = freed {
            stats.bytes += n;
            if b.is_chunk {
                stats.chunks += 1;
            } else {
                stats.blobs += 1;
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::composition::StoreServices;
    use crate::register::{add_content_addressed, CaMethod};

    async fn add(s: &StoreServices, name: &str, contents: &[u8], refs: Vec<StorePath>) -> PathInfo {
        let nar = crate::register::flat_file_nar(std::io::Cursor::new(contents.to_vec()), contents.len() as u64);
        add_content_addressed(nar, name, CaMethod::Text, refs, &*s.blobs, &*s.dirs, &*s.infos).await.unwrap()
    }

    fn services() -> StoreServices {
        StoreServices::from_addrs("memory://", "memory://", "memory://").unwrap()
    }

    #[tokio::test]
    async fn delete_refuses_referenced_paths_unless_recursive() {
        let s = services();
        let dep = add(&s, "dep", b"dep", vec![]).await.store_path;
        let top = add(&s, "top", format!("uses {dep}").as_bytes(), vec![dep.clone()]).await.store_path;
        let e = delete_paths(&*s.infos, std::slice::from_ref(&dep), false).await.unwrap_err();
        assert!(matches!(&e, GcError::Referenced { path, referrer } if *path == dep && *referrer == top), "{e}");
        assert!(e.to_string().contains("since it is still alive"), "{e}");
        assert_eq!(paths_to_delete(&*s.infos, std::slice::from_ref(&dep), true).await.unwrap().len(), 2);
        // deleting both at once is fine without --recursive
        let both = delete_paths(&*s.infos, &[dep.clone(), top.clone()], false).await.unwrap();
        assert_eq!(both.len(), 2);
        assert!(s.infos.get(*top.digest()).await.unwrap().is_none());
        assert_eq!(s.infos.list_deleted().try_collect::<Vec<_>>().await.unwrap().len(), 2);
        let e = delete_paths(&*s.infos, &[dep], false).await.unwrap_err();
        assert!(matches!(e, GcError::NotValid(_)), "{e}");
    }

    #[tokio::test]
    async fn gc_sweeps_only_what_nothing_reaches_and_honours_the_grace_period() {
        let s = services();
        let dep = add(&s, "dep", b"shared", vec![]).await;
        let top = add(&s, "top", format!("uses {}", dep.store_path).as_bytes(), vec![dep.store_path.clone()]).await;
        let other = add(&s, "other", b"only other", vec![]).await;
        // unregistered content, as an interrupted upload leaves it
        snix_castore::blobservice::put_bytes(&*s.blobs, b"orphan").await.unwrap();

        // within the grace period nothing goes, not even the orphan
        let keep = Some(vec![top.store_path.clone()]);
        let stats = collect_garbage(
            &*s.infos,
            &*s.blobs,
            &*s.dirs,
            &GcOptions { keep: keep.clone(), ..Default::default() },
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(stats.paths, vec![other.store_path.clone()]);
        assert_eq!(stats.bytes, 0, "{stats:?}");
        assert!(s.infos.get(*other.store_path.digest()).await.unwrap().is_none());

        // grace 0: the deleted path's content and the orphan go, the kept closure stays
        let now = GcOptions { grace: Duration::ZERO, ..Default::default() };
        let dry = collect_garbage(&*s.infos, &*s.blobs, &*s.dirs, &GcOptions { dry_run: true, ..now.clone() }, |_| {})
            .await
            .unwrap();
        let stats = collect_garbage(&*s.infos, &*s.blobs, &*s.dirs, &now, |_| {}).await.unwrap();
        assert_eq!(stats, dry, "a dry run reports what a real one does");
        assert_eq!((stats.tombstones, stats.chunks), (1, 2), "{stats:?}");
        assert_eq!(stats.bytes, ("only other".len() + "orphan".len()) as u64);
        for kept in [&top, &dep] {
            let Node::File { digest, .. } = kept.node else { panic!() };
            assert!(s.blobs.has(&digest).await.unwrap());
        }
        let Node::File { digest, .. } = other.node else { panic!() };
        assert!(!s.blobs.has(&digest).await.unwrap());
        // nothing left to do
        let again = collect_garbage(&*s.infos, &*s.blobs, &*s.dirs, &now, |_| {}).await.unwrap();
        assert_eq!(again, GcStats::default());
    }
}
