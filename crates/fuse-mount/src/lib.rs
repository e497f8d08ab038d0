//! A read-only FUSE view of the store (`snix-mount`): one directory per store
//! path, contents read from the castore over gRPC.
//!
//! Owns: the FUSE file system, its inode table and caches. Invariant: it never
//! writes — no store or castore mutation; on disk it writes only its own
//! content cache directory, where a name is a complete, checked copy. Must not depend on: the
//! worker protocol; it reaches the data only through the store and castore
//! service traits (gRPC clients).
//!
//! Map: [`fs`] (the FUSE requests), [`cache`] (whole copies of blobs on
//! local disk, for passthrough and `pread`), [`inodes`] (inode numbers and the
//! kernel's references), [`listing`] (the order the root lists paths in:
//! referrers first), [`misses`] (store paths known absent, kept only
//! while a watch of the store's registrations says nothing changed). The `snix-mount` binary (`src/bin/snix-mount`)
//! owns the flags and the mount's lifecycle.

pub mod cache;
pub mod fs;
pub mod inodes;
pub mod listing;
pub mod misses;
