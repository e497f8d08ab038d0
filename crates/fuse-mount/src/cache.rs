//! The local content cache: whole, decompressed copies of blobs on local
//! disk, named by their BLAKE3 digest (`<dir>/<hex>`), so the kernel (FUSE
//! passthrough) or a plain `pread` can serve their reads.
//!
//! A copy is written to `<dir>/tmp/`, its digest and size checked, then
//! renamed into place: a name in `<dir>` is a complete copy or nothing. Copies
//! found at start-up (a previous run's) are hashed again on their first use
//! and dropped if wrong, never served. The cache never holds more than its
//! bound: the least recently used copies that no one has open go first.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
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
    total: u64,
    open: HashMap<B3Digest, usize>,
    filling: HashSet<B3Digest>,
}

impl Default for State {
    fn default() -> Self {
        State { lru: lru::LruCache::unbounded(), total: 0, open: HashMap::new(), filling: HashSet::new() }
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
    digest: B3Digest,
    cache: Arc<ContentCache>,
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.cache.closed(&self.digest);
    }
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
        let mut file = match File::open(self.path(digest)) {
            Ok(file) => CachedFile { file, digest: *digest, cache: self.clone() },
            Err(e) => {
                self.closed(digest);
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

    /// Copies blob `digest` (of `size` bytes) from `blobs` into the cache,
    /// unless it is there, being copied, or larger than the bound. Errors
    /// are logged: the cache is an optimisation, reads go on without it.
    pub async fn fill(self: Arc<Self>, blobs: Arc<dyn BlobService>, digest: B3Digest, size: u64) {
        {
            let mut s = self.state();
            if size > self.max_bytes || s.lru.contains(&digest) || !s.filling.insert(digest) {
                return;
            }
        }
        let r = self.copy_in(&*blobs, &digest, size).await;
        self.state().filling.remove(&digest);
        if let Err(e) = r {
            tracing::warn!(%digest, error = %e, "caching a blob failed");
        }
    }

    async fn copy_in(&self, blobs: &dyn BlobService, digest: &B3Digest, size: u64) -> io::Result<()> {
        let mut reader = blobs.open_read(digest).await?.ok_or_else(|| io::Error::other("the blob is missing"))?;
        let tmp = tempfile::NamedTempFile::new_in(self.dir.join("tmp"))?;
        let mut out = io::BufWriter::with_capacity(1 << 20, tmp);
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
            if len > size {
                return Err(io::Error::other("the blob is longer than its entry says"));
            }
            // a local write of at most 1 MiB: brief enough for a runtime thread
            out.write_all(&buf[..n])?;
        }
        if B3Digest::from(hasher.finalize()) != *digest || len != size {
            return Err(io::Error::other("the blob's content does not match its digest and size"));
        }
        let tmp = out.into_inner().map_err(|e| e.into_error())?;
        // room, the rename and the count at once: the bound holds
        let mut s = self.state();
        if !self.evict_for(&mut s, size) {
            return Ok(()); // everything is open: no room now
        }
        tmp.persist(self.path(digest)).map_err(|e| e.error)?;
        s.total += size;
        s.lru.put(*digest, Entry { size, verified: true });
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
