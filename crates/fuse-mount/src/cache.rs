//! The local content cache: whole, decompressed copies of blobs on local
//! disk, named by their BLAKE3 digest (`<dir>/<hex>`), so the kernel (FUSE
//! passthrough) or a plain `pread` can serve their reads.
//!
//! A copy is written to `<dir>/tmp/`, its digest and size checked, then
//! renamed into place: a name in `<dir>` is a complete copy or nothing. Copies
//! found at start-up (a previous run's) are hashed again on their first use
//! and dropped if wrong, never served. The cache never holds more than its
//! bound: the least recently used copies that no one has open go first.
//!
//! While a copy is being made, the file's first readers read the part
//! written so far from the unfinished copy ([`Filling`]): the blob is fetched
//! once, not once for the reader and once for the cache.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use snix_castore::blobservice::BlobService;
use snix_castore::B3Digest;
use tokio::io::AsyncReadExt;

#[derive(Debug)]
struct Entry {
    size: u64,
    /// Hashed since this process started (copies it wrote itself are).
    verified: bool,
}

struct State {
    lru: lru::LruCache<B3Digest, Entry>,
    /// Bytes held, and reserved by copies being made.
    total: u64,
    open: HashMap<B3Digest, usize>,
    filling: HashMap<B3Digest, Arc<Filling>>,
}

impl Default for State {
    fn default() -> Self {
        State { lru: lru::LruCache::unbounded(), total: 0, open: HashMap::new(), filling: HashMap::new() }
    }
}

/// How far a copy being made has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillProgress {
    /// The first `n` bytes are written (each from a verified chunk).
    Written(u64),
    /// Complete, checked and in place.
    Done,
    /// Given up: read elsewhere.
    Failed,
}

/// A copy being made: readers may read what is written so far.
pub struct Filling {
    /// The unfinished copy (the same open file the filler writes).
    pub file: File,
    pub size: u64,
    progress: tokio::sync::watch::Sender<FillProgress>,
    /// Reads fetched from the castore beside the copy (far from it) in
    /// flight, and when the last one ended: the copy waits for them.
    foreground: Mutex<(usize, Option<std::time::Instant>)>,
    /// Reads waiting for the copy to reach them: it is not paused for
    /// foreground reads meanwhile (it would keep them waiting), and is
    /// woken from a pause when one starts.
    waiting: std::sync::atomic::AtomicUsize,
    resume: tokio::sync::Notify,
}

/// A read beside the copy being made, in flight (see [`Filling::foreground`]).
pub struct ForegroundRead<'a>(&'a Filling);

impl Drop for ForegroundRead<'_> {
    fn drop(&mut self) {
        let mut f = self.0.foreground.lock().unwrap_or_else(|p| p.into_inner());
        f.0 -= 1;
        f.1 = Some(std::time::Instant::now());
    }
}

/// How long the copy stays paused after a read beside it: an application
/// reading here and there issues one read after another.
const FOREGROUND_QUIET: std::time::Duration = std::time::Duration::from_millis(50);

impl Filling {
    /// Marks a read fetched from the castore beside the copy: the copy
    /// pauses while it lasts (and briefly after), so it gets the daemon.
    pub fn foreground_read(&self) -> ForegroundRead<'_> {
        self.foreground.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
        ForegroundRead(self)
    }

    async fn yield_to_foreground(&self) {
        loop {
            if self.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                return;
            }
            let wait = {
                let f = self.foreground.lock().unwrap_or_else(|p| p.into_inner());
                match *f {
                    (0, None) => return,
                    (0, Some(t)) if t.elapsed() >= FOREGROUND_QUIET => return,
                    (0, Some(t)) => FOREGROUND_QUIET - t.elapsed(),
                    _ => FOREGROUND_QUIET,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.resume.notified() => {}
            }
        }
    }

    pub fn progress(&self) -> FillProgress {
        *self.progress.borrow()
    }

    /// Waits until the first `end` bytes are written: true, or false if the
    /// fill failed (read them elsewhere).
    pub async fn wait_for(&self, end: u64) -> bool {
        struct Waiting<'a>(&'a Filling);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _waiting = Waiting(self);
        self.resume.notify_one();
        let mut rx = self.progress.subscribe();
        let r = rx
            .wait_for(|p| match *p {
                FillProgress::Written(n) => n >= end,
                FillProgress::Done | FillProgress::Failed => true,
            })
            .await;
        matches!(r.as_deref(), Ok(FillProgress::Written(_)) | Ok(FillProgress::Done))
    }
}

/// Keeps a digest's copy from eviction while it lives (held by each open
/// file reading it, made or being made).
pub struct Pin {
    digest: B3Digest,
    cache: Arc<ContentCache>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.cache.closed(&self.digest);
    }
}

pub struct ContentCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

/// A cached copy held open: while it lives, eviction leaves the copy alone.
pub struct CachedFile {
    pub file: File,
    _pin: Pin,
}

fn hash_file(file: &mut File) -> io::Result<(B3Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hasher.finalize().into(), len));
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

impl ContentCache {
    /// Opens (creating it) the cache in `dir`, bounded to `max_bytes`: the
    /// copies a previous run left are kept (oldest first to go), unfinished
    /// ones removed.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Arc<Self>> {
        let tmp = dir.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(digest) = name.to_str().and_then(parse_hex) else { continue };
            let meta = e.metadata()?;
            if meta.is_file() {
                found.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), digest, meta.len()));
            }
        }
        found.sort();
        let mut state = State::default();
        for (_, digest, size) in found {
            state.total += size;
            state.lru.put(digest, Entry { size, verified: false });
        }
        let mut cache = ContentCache { dir: dir.to_path_buf(), max_bytes, state: Mutex::new(State::default()) };
        cache.evict_for(&mut state, 0);
        cache.state = Mutex::new(state);
        Ok(Arc::new(cache))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, digest: &B3Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Bytes held now.
    pub fn used_bytes(&self) -> u64 {
        self.state().total
    }

    /// The complete copy of `digest` (of `size` bytes), opened, if there is
    /// one. A copy that is not what its name says is removed.
    pub fn get(self: &Arc<Self>, digest: &B3Digest, size: u64) -> Option<CachedFile> {
        let verified = {
            let mut s = self.state();
            let e = s.lru.get(digest)?;
            if e.size != size {
                drop(s);
                self.drop_copy(digest, "its size is not the blob's");
                return None;
            }
            let verified = e.verified;
            *s.open.entry(*digest).or_default() += 1;
            verified
        };
        // from here the copy is ours: counted open, eviction leaves it
        let pin = Pin { digest: *digest, cache: self.clone() };
        let mut file = match File::open(self.path(digest)) {
            Ok(file) => CachedFile { file, _pin: pin },
            Err(e) => {
                drop(pin);
                self.drop_copy(digest, &format!("it cannot be opened: {e}"));
                return None;
            }
        };
        if !verified {
            match hash_file(&mut file.file) {
                Ok((d, len)) if d == *digest && len == size => {
                    if let Some(e) = self.state().lru.peek_mut(digest) {
                        e.verified = true;
                    }
                }
                Ok(_) => {
                    drop(file);
                    self.drop_copy(digest, "its content does not hash to its name");
                    return None;
                }
                Err(e) => {
                    drop(file);
                    self.drop_copy(digest, &format!("reading it failed: {e}"));
                    return None;
                }
            }
        }
        Some(file)
    }

    fn closed(&self, digest: &B3Digest) {
        let mut s = self.state();
        if let Some(n) = s.open.get_mut(digest) {
            *n -= 1;
            if *n == 0 {
                s.open.remove(digest);
            }
        }
    }

    fn drop_copy(&self, digest: &B3Digest, why: &str) {
        tracing::warn!(%digest, "dropping the cached copy: {why}");
        let mut s = self.state();
        if s.open.contains_key(digest) {
            return;
        }
        if let Some(e) = s.lru.pop(digest) {
            s.total -= e.size;
        }
        let _ = std::fs::remove_file(self.path(digest));
    }

    /// Removes least recently used copies no one holds open until `incoming`
    /// more bytes fit. False if they cannot.
    fn evict_for(&self, s: &mut State, incoming: u64) -> bool {
        let mut kept = Vec::new();
        while s.total + incoming > self.max_bytes {
            let Some((digest, e)) = s.lru.pop_lru() else { break };
            if s.open.contains_key(&digest) {
                kept.push((digest, e));
                continue;
            }
            s.total -= e.size;
            if let Err(err) = std::fs::remove_file(self.path(&digest)) {
                tracing::warn!(%digest, error = %err, "evicting a cached copy");
            }
        }
        // the open ones stay, least recently used again
        for (digest, e) in kept.into_iter().rev() {
            s.lru.put(digest, e);
            s.lru.demote(&digest);
        }
        s.total + incoming <= self.max_bytes
    }

    /// Keeps `digest`'s copy (made or to be made) from eviction.
    pub fn pin(self: &Arc<Self>, digest: &B3Digest) -> Pin {
        *self.state().open.entry(*digest).or_default() += 1;
        Pin { digest: *digest, cache: self.clone() }
    }

    /// The copy of blob `digest` (of `size` bytes) being made, started now
    /// (in the background, on `rt`) unless it already is.
    /// None if the copy is there already (use [`get`](Self::get)), cannot
    /// fit the bound, or cannot be started (logged: the cache is an
    /// optimisation, reads go on without it).
    pub fn fill(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        blobs: Arc<dyn BlobService>,
        digest: B3Digest,
        size: u64,
    ) -> Option<Arc<Filling>> {
        let mut s = self.state();
        if let Some(f) = s.filling.get(&digest) {
            return Some(f.clone());
        }
        if s.lru.contains(&digest) || size > self.max_bytes {
            return None;
        }
        // room is made before the copy is: the bound holds while it grows
        if !self.evict_for(&mut s, size) {
            return None; // everything is open: no room now
        }
        // the copy, and a handle on it for its readers
        let created = tempfile::NamedTempFile::new_in(self.dir.join("tmp"))
            .and_then(|tmp| tmp.as_file().try_clone().map(|file| (tmp, file)));
        let (tmp, file) = match created {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "caching a blob failed");
                return None;
            }
        };
        s.total += size;
        let (progress, _) = tokio::sync::watch::channel(FillProgress::Written(0));
        let filling = Arc::new(Filling {
            file,
            size,
            progress,
            foreground: Mutex::new((0, None)),
            waiting: Default::default(),
            resume: Default::default(),
        });
        s.filling.insert(digest, filling.clone());
        drop(s);
        let (cache, f) = (self.clone(), filling.clone());
        rt.spawn(async move {
            let r = cache.copy_in(&*blobs, &digest, &f, tmp).await;
            let mut s = cache.state();
            s.filling.remove(&digest);
            match r {
                Ok(()) => {
                    s.lru.put(digest, Entry { size, verified: true });
                    f.progress.send_replace(FillProgress::Done);
                }
                Err(e) => {
                    s.total -= size;
                    f.progress.send_replace(FillProgress::Failed);
                    tracing::warn!(%digest, error = %e, "caching a blob failed");
                }
            }
        });
        Some(filling)
    }

    async fn copy_in(
        &self,
        blobs: &dyn BlobService,
        digest: &B3Digest,
        filling: &Filling,
        tmp: tempfile::NamedTempFile,
    ) -> io::Result<()> {
        let size = filling.size;
        let mut reader = blobs.open_read(digest).await?.ok_or_else(|| io::Error::other("the blob is missing"))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = Vec::with_capacity(1 << 20);
        let mut len = 0u64;
        loop {
            filling.yield_to_foreground().await;
            buf.clear();
            // up to 1 MiB at a time, written as it comes: readers wait for it
            let mut limited = (&mut reader).take(1 << 20);
            while limited.read_buf(&mut buf).await? != 0 {}
            if buf.is_empty() {
                break;
            }
            len += buf.len() as u64;
            if len > size {
                return Err(io::Error::other("the blob is longer than its entry says"));
            }
            hasher.update(&buf);
            // a local write of at most 1 MiB: brief enough for a runtime thread
            tmp.as_file().write_all_at(&buf, len - buf.len() as u64)?;
            filling.progress.send_replace(FillProgress::Written(len));
        }
        if B3Digest::from(hasher.finalize()) != *digest || len != size {
            return Err(io::Error::other("the blob's content does not match its digest and size"));
        }
        tmp.persist(self.path(digest)).map_err(|e| e.error)?;
        Ok(())
    }
}

fn parse_hex(s: &str) -> Option<B3Digest> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(B3Digest::from(out))
}
