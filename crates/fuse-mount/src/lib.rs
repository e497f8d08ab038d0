//! A read-only FUSE view of the store (`snix-mount`): one directory per store
//! path, contents read from the castore over gRPC.
//!
//! Owns: the FUSE file system, its inode table and caches. Invariant: it never
//! writes — no store, castore or file system mutation. Must not depend on: the
//! worker protocol; it reaches the data only through the store and castore
//! service traits (gRPC clients).
//!
//! Map: [`fs`] (the FUSE requests), [`inodes`] (inode numbers and the
//! kernel's references). The `snix-mount` binary (`src/bin/snix-mount`)
//! owns the flags and the mount's lifecycle.

pub mod fs;
pub mod inodes;
