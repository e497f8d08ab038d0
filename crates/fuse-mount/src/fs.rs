//! The FUSE file system: answers the kernel's requests from path infos,
//! directories and blobs. Read-only; nothing here writes anywhere.
//!
//! FUSE worker threads call in synchronously; each call runs its async work
//! on the tokio runtime with `block_on`, so `--threads` requests proceed at
//! once. Content is immutable, so attributes, entries and page cache are
//! kept by the kernel for a long time.
//!
//! With a content cache, a file whose whole copy is on local disk is read
//! from that copy: by the kernel itself (FUSE passthrough), or by `pread`
//! here. Other files are read from the castore while a copy is made in the
//! background, for the next open.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::SeekFrom;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use futures::TryStreamExt;
use nix_compat::store_path::StorePath;
use snix_castore::blobservice::{BlobReader, BlobService};
use snix_castore::directoryservice::DirectoryService;
use snix_castore::{B3Digest, Directory, Node};
use snix_store::pathinfoservice::PathInfoService;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::runtime::Handle;

use crate::cache::{CachedFile, ContentCache, FillProgress, Filling, Pin};
use crate::inodes::{ino_for, Inode, InodeTable, ROOT};
use crate::misses::Misses;

/// How long the kernel may keep entries and attributes: content never
/// changes under a name.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// How long the kernel may keep a store path's own entry: a path can be
/// deleted, and a new lookup must then find it gone (open files keep
/// working: the kernel holds their inodes).
pub const ROOT_ENTRY_TTL: Duration = Duration::from_secs(5);
/// How long the kernel may keep a miss of a store path that we keep (see
/// [`crate::misses`]): until the watch tells of a change, which drops it.
pub const MISS_TTL: Duration = Duration::from_secs(3600);
/// Directories kept in memory.
const DIRECTORY_CACHE: usize = 50_000;
/// A read this far past what a copy being made has written waits for it
/// (the copy is fetched in order, with readahead: a sequential reader's
/// requests run up to about 2 MiB ahead of it); one further off is fetched
/// on its own, so a random read does not wait for all before it.
const FILL_WAIT_WINDOW: u64 = 2 << 20;
/// Directory entries prepared for one readdir reply: more than the largest
/// reply holds (the kernel asks again from where it stopped), and few
/// enough that a listing of N entries costs O(N), not O(N²).
const ENTRIES_PER_REPLY: usize = 512;
/// Nix's fixed store mtime.
const MTIME: Duration = Duration::from_secs(1);
/// The extended attribute exposing castore digests (`--show-xattr`).
pub const XATTR_DIGEST: &str = "user.snix.castore.digest";

pub struct Options {
    pub list_root: bool,
    pub show_xattr: bool,
    /// Whole copies of files on local disk (none: every read goes to the castore).
    pub cache: Option<Arc<ContentCache>>,
    /// Ask the kernel to read cached copies itself (FUSE passthrough).
    pub passthrough: bool,
}

/// How the kernel reads an inode's open files: all through us, or all from
/// one backing file. The kernel refuses to mix the two on one inode.
enum IoMode {
    Served(usize),
    Passthrough(Arc<BackingId>, usize),
}

pub struct SnixFs {
    rt: Handle,
    blobs: Arc<dyn BlobService>,
    dirs: Arc<dyn DirectoryService>,
    infos: Arc<dyn PathInfoService>,
    opts: Options,
    inodes: InodeTable,
    directories: Mutex<lru::LruCache<B3Digest, Arc<Directory>>>,
    misses: Arc<Misses>,
    next_fh: AtomicU64,
    files: Mutex<HashMap<u64, (u64, Arc<OpenFile>)>>,
    io_modes: Mutex<HashMap<u64, IoMode>>,
    /// Passthrough was asked for and the kernel agreed (set in `init`).
    passthrough: bool,
    /// The kernel refused a backing file (e.g. the cache is on a stacked
    /// file system): cached copies are read with pread from then on.
    backing_refused: std::sync::atomic::AtomicBool,
    root_listings: Mutex<HashMap<u64, Arc<RootListing>>>,
}

/// The root's entries, referrers first (see [`crate::listing`]).
fn root_listing(infos: Vec<snix_store::PathInfo>) -> RootListing {
    let graph: Vec<(&[u8; 20], Vec<&[u8; 20]>)> =
        infos.iter().map(|i| (i.store_path.digest(), i.references.iter().map(|r| r.digest()).collect())).collect();
    let order = crate::listing::referrers_first(&graph);
    let mut infos: Vec<Option<snix_store::PathInfo>> = infos.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| infos[i].take())
        .map(|info| (info.store_path.basename().into_bytes(), info.node))
        .collect()
}

/// A snapshot of the root, taken when it is opened: (name, node) pairs.
type RootListing = Vec<(Vec<u8>, Node)>;

struct RemoteFile {
    reader: Box<dyn BlobReader>,
    pos: u64,
}

enum OpenFile {
    /// Read from the castore.
    Remote(tokio::sync::Mutex<RemoteFile>),
    /// Read from the copy being made where it has got to, else from the
    /// castore (opened on first need).
    Filling { filling: Arc<Filling>, _pin: Pin, remote: tokio::sync::Mutex<Option<RemoteFile>>, digest: B3Digest },
    /// Read from the cached copy with `pread`.
    Local(CachedFile),
    /// Read by the kernel from the cached copy (held open here so it is not
    /// evicted while the kernel reads it).
    Passthrough(CachedFile),
}

impl RemoteFile {
    /// Blob `digest` opened on the castore; a missing blob is an error here
    /// (its entry exists, so its content must).
    async fn open(blobs: &dyn BlobService, digest: &B3Digest) -> std::io::Result<RemoteFile> {
        match blobs.open_read(digest).await? {
            Some(reader) => Ok(RemoteFile { reader, pos: 0 }),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "blob is missing from the castore")),
        }
    }

    async fn read_at(&mut self, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
        if self.pos != offset {
            self.reader.seek(SeekFrom::Start(offset)).await?;
            self.pos = offset;
        }
        // fill spare capacity directly (no zeroing of the buffer first)
        let mut buf = Vec::with_capacity(size as usize);
        let mut limited = (&mut self.reader).take(size as u64);
        while limited.read_buf(&mut buf).await? != 0 {}
        self.pos += buf.len() as u64;
        Ok(buf)
    }
}

async fn read_remote(remote: &tokio::sync::Mutex<RemoteFile>, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
    remote.lock().await.read_at(offset, size).await
}

/// Reads up to `size` bytes at `offset` of a local file.
fn pread(file: &std::fs::File, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Any failure to produce the bytes of an entry that exists — content
/// missing or corrupt, daemon unreachable — is an I/O error on that file.
fn errno_of(_e: &std::io::Error) -> Errno {
    Errno::EIO
}

impl SnixFs {
    pub fn new(
        rt: Handle,
        blobs: Arc<dyn BlobService>,
        dirs: Arc<dyn DirectoryService>,
        infos: Arc<dyn PathInfoService>,
        opts: Options,
    ) -> Self {
        SnixFs {
            rt,
            blobs,
            dirs,
            infos,
            opts,
            inodes: InodeTable::new(),
            directories: Mutex::new(lru::LruCache::new(NonZeroUsize::new(DIRECTORY_CACHE).expect("non-zero"))),
            misses: Arc::new(Misses::default()),
            next_fh: AtomicU64::new(1),
            files: Mutex::new(HashMap::new()),
            io_modes: Mutex::new(HashMap::new()),
            passthrough: false,
            backing_refused: std::sync::atomic::AtomicBool::new(false),
            root_listings: Mutex::new(HashMap::new()),
        }
    }

    /// The misses this file system keeps: for [`crate::misses::watch_changes`].
    pub fn misses(&self) -> Arc<Misses> {
        self.misses.clone()
    }

    /// Inodes currently held (tests, memory checks).
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    fn attr(ino: u64, inode: &Inode) -> FileAttr {
        let (kind, perm, size, nlink) = match inode {
            Inode::Root => (FileType::Directory, 0o555, 0, 2),
            Inode::Node(Node::Directory { .. }) => (FileType::Directory, 0o555, 0, 2),
            Inode::Node(Node::File { size, executable, .. }) => {
                (FileType::RegularFile, if *executable { 0o555 } else { 0o444 }, *size, 1)
            }
            Inode::Node(Node::Symlink { target }) => (FileType::Symlink, 0o777, target.len() as u64, 1),
        };
        let t = SystemTime::UNIX_EPOCH + MTIME;
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// `attr` with the directory's real link count (2 + subdirectories).
    fn attr_of(&self, ino: u64, inode: &Inode) -> Result<FileAttr, Errno> {
        let mut a = Self::attr(ino, inode);
        if let Inode::Node(Node::Directory { digest, .. }) = inode {
            let dir = self.directory(digest)?;
            a.nlink = 2 + dir.nodes().filter(|(_, n)| matches!(n, Node::Directory { .. })).count() as u32;
        }
        Ok(a)
    }

    /// A directory by digest: from the cache, else fetched alone.
    fn directory(&self, digest: &B3Digest) -> Result<Arc<Directory>, Errno> {
        if let Some(d) = self.directories.lock().expect("cache lock").get(digest) {
            return Ok(d.clone());
        }
        let fetched = self.rt.block_on(self.dirs.get(digest)).map_err(|e| {
            tracing::error!(%digest, error = %e, "fetching directory failed");
            Errno::EIO
        })?;
        let Some(dir) = fetched else {
            tracing::error!(%digest, "directory is missing from the castore");
            return Err(Errno::EIO);
        };
        let dir = Arc::new(dir);
        self.directories.lock().expect("cache lock").put(*digest, dir.clone());
        Ok(dir)
    }

    /// A store path's whole tree in one recursive request, into the cache.
    fn prefetch_tree(&self, node: &Node) {
        let Node::Directory { digest, .. } = node else { return };
        if self.directories.lock().expect("cache lock").contains(digest) {
            return;
        }
        let fetched: Result<Vec<Directory>, _> = self.rt.block_on(self.dirs.get_recursive(digest).try_collect());
        match fetched {
            Ok(tree) => {
                let mut cache = self.directories.lock().expect("cache lock");
                // the root last, so it is the most recently used
                for d in tree.into_iter().rev() {
                    cache.put(d.digest(), Arc::new(d));
                }
            }
            Err(e) => tracing::warn!(%digest, error = %e, "recursive directory fetch failed; fetching lazily"),
        }
    }

    /// A root entry: the store path `name`, if registered. A miss is kept
    /// where it may be (see [`crate::misses`]).
    fn lookup_store_path(&self, name: &[u8]) -> Result<Option<Node>, Errno> {
        let Ok(path) = StorePath::from_basename(name) else { return Ok(None) };
        if self.misses.is_miss(name) {
            return Ok(None);
        }
        let ticket = self.misses.ticket();
        let info = self.rt.block_on(snix_store::pathinfoservice::get_path(&*self.infos, &path)).map_err(|e| {
            tracing::error!(path = %path, error = %e, "path info lookup failed");
            Errno::EIO
        })?;
        Ok(match info {
            Some(info) => Some(info.node),
            None => {
                self.misses.record(name, ticket);
                None
            }
        })
    }

    /// The child `name` of directory inode `parent`, and its inode number.
    fn child(&self, parent: u64, name: &[u8]) -> Result<Option<(u64, Node)>, Errno> {
        let (inode, _) = self.inodes.get(parent).ok_or(Errno::ESTALE)?;
        let node = match inode {
            Inode::Root => {
                let Some(node) = self.lookup_store_path(name)? else { return Ok(None) };
                self.prefetch_tree(&node);
                node
            }
            Inode::Node(Node::Directory { digest, .. }) => {
                let dir = self.directory(&digest)?;
                let found = dir.get(name).cloned();
                match found {
                    Some(n) => n,
                    None => return Ok(None),
                }
            }
            Inode::Node(_) => return Err(Errno::ENOTDIR),
        };
        Ok(Some((ino_for(parent, name, &node), node)))
    }

    /// Hands `ino` to the kernel (one more lookup reference).
    fn remember(&self, ino: u64, parent: u64, node: &Node) -> Result<FileAttr, Errno> {
        self.inodes.remember(ino, parent, node).map_err(|e| {
            tracing::error!("{e}");
            Errno::EIO
        })?;
        self.attr_of(ino, &Inode::Node(node.clone()))
    }

    /// Directory entries of `ino` from `offset` on: (next offset, ino, kind, name, node).
    #[allow(clippy::type_complexity)]
    fn entries(&self, ino: u64, fh: u64, offset: u64) -> Result<Vec<(u64, u64, Option<Node>, Vec<u8>)>, Errno> {
        let (inode, parent) = self.inodes.get(ino).ok_or(Errno::ESTALE)?;
        let children: Vec<(Vec<u8>, Node)> = match inode {
            Inode::Root => {
                let listing = self.root_listings.lock().expect("listing lock").get(&fh).cloned();
                let Some(listing) = listing else {
                    // without --list-root there is no opendir (see `opendir`)
                    tracing::info!("refusing to list the mount's root: snix-mount runs with --no-list-root");
                    return Err(Errno::EPERM);
                };
                listing.iter().skip(offset.saturating_sub(2) as usize).take(ENTRIES_PER_REPLY).cloned().collect()
            }
            Inode::Node(Node::Directory { digest, .. }) => {
                let dir = self.directory(&digest)?;
                dir.nodes()
                    .skip(offset.saturating_sub(2) as usize)
                    .take(ENTRIES_PER_REPLY)
                    .map(|(n, c)| (n.to_vec(), c.clone()))
                    .collect()
            }
            Inode::Node(_) => return Err(Errno::ENOTDIR),
        };
        let mut out = Vec::new();
        if offset == 0 {
            out.push((1, ino, None, b".".to_vec()));
        }
        if offset <= 1 {
            out.push((2, parent, None, b"..".to_vec()));
        }
        let first = offset.max(2);
        for (i, (name, node)) in children.into_iter().enumerate() {
            out.push((first + i as u64 + 1, ino_for(ino, &name, &node), Some(node), name));
        }
        Ok(out)
    }

    fn kind(node: &Option<Node>) -> FileType {
        match node {
            None | Some(Node::Directory { .. }) => FileType::Directory,
            Some(Node::File { .. }) => FileType::RegularFile,
            Some(Node::Symlink { .. }) => FileType::Symlink,
        }
    }

    fn xattr_value(&self, ino: u64) -> Result<Option<Vec<u8>>, Errno> {
        let (inode, _) = self.inodes.get(ino).ok_or(Errno::ESTALE)?;
        Ok(match inode {
            Inode::Node(Node::Directory { digest, .. }) | Inode::Node(Node::File { digest, .. }) => {
                Some(digest.to_string().into_bytes())
            }
            _ => None,
        })
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl SnixFs {
    /// Counts an open of `ino` that we serve, and keeps its file.
    fn opened_served(&self, ino: u64, fh: u64, file: OpenFile) {
        {
            let mut modes = self.io_modes.lock().expect("io modes lock");
            match modes.entry(ino).or_insert(IoMode::Served(0)) {
                IoMode::Served(n) | IoMode::Passthrough(_, n) => *n += 1,
            }
        }
        self.files.lock().expect("files lock").insert(fh, (ino, Arc::new(file)));
    }

    /// Opens `ino` from its cached copy: handed to the kernel when
    /// passthrough is on and the inode is not open through us already.
    fn open_cached(&self, ino: u64, fh: u64, copy: CachedFile, reply: ReplyOpen) {
        if self.passthrough && !self.backing_refused.load(Ordering::Relaxed) {
            let mut modes = self.io_modes.lock().expect("io modes lock");
            let backing = match modes.get_mut(&ino) {
                Some(IoMode::Passthrough(id, n)) => {
                    *n += 1;
                    Some(id.clone())
                }
                Some(IoMode::Served(_)) => None,
                None => match reply.open_backing(&copy.file) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        modes.insert(ino, IoMode::Passthrough(id.clone(), 1));
                        Some(id)
                    }
                    Err(e) => {
                        if !self.backing_refused.swap(true, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "passthrough off: the kernel refused a cached copy as a backing file (is the cache on a stacked file system?); cached copies are read with pread");
                        }
                        None
                    }
                },
            };
            drop(modes);
            if let Some(id) = backing {
                self.files.lock().expect("files lock").insert(fh, (ino, Arc::new(OpenFile::Passthrough(copy))));
                return reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id);
            }
        }
        self.opened_served(ino, fh, OpenFile::Local(copy));
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }
}

impl Filesystem for SnixFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_PARALLEL_DIROPS;
        let _ = config.add_capabilities(wanted & config.capabilities());
        // let the kernel read ahead as far as it will, and keep many reads in flight
        let _ = config.set_max_readahead(u32::MAX).or_else(|max| config.set_max_readahead(max));
        let _ = config.set_max_background(64);
        if self.opts.passthrough && self.opts.cache.is_some() {
            let offered = config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH);
            // depth 1: backing files on a plain file system, and this mount
            // itself usable as an overlayfs lower layer (overlay on us on
            // ext4 is depth 2, the kernel's maximum)
            if offered
                && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok()
            {
                self.passthrough = true;
                tracing::info!("passthrough on: the kernel reads cached files itself");
            } else {
                tracing::info!("passthrough off: this kernel does not offer it (Linux 6.9 or later does)");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = parent.0;
        match self.child(parent, name.as_bytes()) {
            Ok(Some((ino, node))) => match self.remember(ino, parent, &node) {
                Ok(attr) => reply.entry(if parent == ROOT { &ROOT_ENTRY_TTL } else { &TTL }, &attr, Generation(0)),
                Err(e) => reply.error(e),
            },
            Ok(None) if parent == ROOT && self.misses.is_miss(name.as_bytes()) => {
                // a negative entry (inode 0): the kernel keeps the miss until
                // the watch drops it (ENOENT would have it ask every time)
                let mut attr = Self::attr(0, &Inode::Root);
                attr.ino = INodeNo(0);
                reply.entry(&MISS_TTL, &attr, Generation(0))
            }
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inodes.get(ino.0).ok_or(Errno::ESTALE).and_then(|(i, _)| self.attr_of(ino.0, &i)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inodes.get(ino.0) {
            Some((Inode::Node(Node::Symlink { target }), _)) => reply.data(&target),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ESTALE),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let (digest, size) = match self.inodes.get(ino.0) {
            Some((Inode::Node(Node::File { digest, size, .. }), _)) => (digest, size),
            Some((Inode::Node(Node::Directory { .. }), _)) | Some((Inode::Root, _)) => {
                return reply.error(Errno::EISDIR)
            }
            Some(_) => return reply.error(Errno::EINVAL),
            None => return reply.error(Errno::ESTALE),
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.opts.cache {
            if let Some(copy) = cache.get(&digest, size) {
                return self.open_cached(ino.0, fh, copy, reply);
            }
            if size > 0 {
                let pin = cache.pin(&digest);
                if let Some(filling) = cache.fill(&self.rt, self.blobs.clone(), digest, size) {
                    let file = OpenFile::Filling { filling, _pin: pin, remote: Default::default(), digest };
                    self.opened_served(ino.0, fh, file);
                    return reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
                }
            }
        }
        let remote = match self.rt.block_on(RemoteFile::open(&*self.blobs, &digest)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%digest, error = %e, "opening blob failed");
                return reply.error(errno_of(&e));
            }
        };
        self.opened_served(ino.0, fh, OpenFile::Remote(tokio::sync::Mutex::new(remote)));
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let Some((_, file)) = self.files.lock().expect("files lock").get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let res = match &*file {
            OpenFile::Remote(remote) => self.rt.block_on(read_remote(remote, offset, size)),
            OpenFile::Local(copy) | OpenFile::Passthrough(copy) => pread(&copy.file, offset, size),
            OpenFile::Filling { filling, remote, digest, .. } => {
                let end = (offset + size as u64).min(filling.size);
                let from_copy = match filling.progress() {
                    FillProgress::Done => true,
                    FillProgress::Written(n) if n >= end => true,
                    FillProgress::Written(n) if offset < n + FILL_WAIT_WINDOW => {
                        self.rt.block_on(filling.wait_for(end))
                    }
                    _ => false,
                };
                if from_copy {
                    pread(&filling.file, offset, size)
                } else {
                    let _foreground = filling.foreground_read();
                    self.rt.block_on(async {
                        let mut remote = remote.lock().await;
                        if remote.is_none() {
                            *remote = Some(RemoteFile::open(&*self.blobs, digest).await?);
                        }
                        remote.as_mut().expect("opened").read_at(offset, size).await
                    })
                }
            }
        };
        match res {
            Ok(data) => reply.data(&data),
            Err(e) => {
                tracing::error!(ino = ino.0, error = %e, "reading failed");
                reply.error(errno_of(&e))
            }
        }
    }

    /// Called on every close(2): read-only files have nothing to write back.
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let released = self.files.lock().expect("files lock").remove(&fh.0);
        if let Some((ino, _)) = released {
            let mut modes = self.io_modes.lock().expect("io modes lock");
            let last = match modes.get_mut(&ino) {
                Some(IoMode::Served(n)) | Some(IoMode::Passthrough(_, n)) => {
                    *n -= 1;
                    *n == 0
                }
                None => false,
            };
            if last {
                // the last one: its backing id (if any) is closed with it
                modes.remove(&ino);
            }
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.opts.list_root {
            // Only a listing of the root needs an open (its snapshot). The
            // kernel stops sending opendir for good after ENOSYS, and then
            // keeps every directory's listing itself: a second walk costs
            // no round trip at all (not even the opendir/releasedir pair).
            // The root's readdir is then refused with EPERM.
            return reply.error(Errno::ENOSYS);
        }
        if ino.0 != ROOT {
            // a store path's directories never change: the kernel keeps
            // their listings, so a second walk never reaches us
            return reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE);
        }
        // a snapshot per open: offsets stay valid while paths are added
        let started = std::time::Instant::now();
        let infos: Result<Vec<_>, _> = self.rt.block_on(self.infos.list().try_collect());
        match infos {
            Ok(infos) => {
                let fetched = started.elapsed();
                let listing = root_listing(infos);
                tracing::debug!(paths = listing.len(), ?fetched, ordered = ?started.elapsed() - fetched, "listed the root");
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.root_listings.lock().expect("listing lock").insert(fh, Arc::new(listing));
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => {
                tracing::error!(error = %e, "listing path infos failed");
                reply.error(Errno::EIO)
            }
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.entries(ino.0, fh.0, offset) {
            Ok(entries) => {
                for (next, child_ino, node, name) in entries {
                    if reply.add(INodeNo(child_ino), next, Self::kind(&node), OsStr::from_bytes(&name)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let entries = match self.entries(ino.0, fh.0, offset) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        for (next, child_ino, node, name) in entries {
            let attr = match &node {
                // "." and "..": attributes only, no lookup reference is taken
                None => match self.inodes.get(child_ino) {
                    Some((i, _)) => Self::attr(child_ino, &i),
                    None => Self::attr(child_ino, &Inode::Root),
                },
                Some(n) => match self.attr_of(child_ino, &Inode::Node(n.clone())) {
                    Ok(a) => a,
                    Err(e) => return reply.error(e),
                },
            };
            if reply.add(INodeNo(child_ino), next, OsStr::from_bytes(&name), &TTL, &attr, Generation(0)) {
                break;
            }
            if let Some(n) = &node {
                // the kernel now holds a reference, as after a lookup
                if let Err(e) = self.inodes.remember(child_ino, ino.0, n) {
                    tracing::error!("{e}");
                }
            }
        }
        reply.ok()
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.root_listings.lock().expect("listing lock").remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.opts.show_xattr {
            return reply.error(Errno::ENOSYS);
        }
        if name.as_bytes() != XATTR_DIGEST.as_bytes() {
            return reply.error(Errno::NO_XATTR);
        }
        match self.xattr_value(ino.0) {
            Ok(Some(v)) => reply_xattr(reply, size, &v),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.opts.show_xattr {
            return reply.error(Errno::ENOSYS);
        }
        match self.xattr_value(ino.0) {
            Ok(Some(_)) => reply_xattr(reply, size, format!("{XATTR_DIGEST}\0").as_bytes()),
            Ok(None) => reply_xattr(reply, size, b""),
            Err(e) => reply.error(e),
        }
    }
}
