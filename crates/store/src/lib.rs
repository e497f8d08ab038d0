//! Nix store paths mapped onto castore trees: path infos, NAR ingest (NAR →
//! castore) and render (castore → NAR), and the `snix.store.v1` gRPC API.
//!
//! Owns: PathInfo and its validation, the PathInfoService trait and backends,
//! NAR ingest/render, the `snix-store` commands (daemon, import, copy, …).
//! Must not depend on: the FUSE layer or the worker protocol. Talks to castore
//! only through its service traits (and so over gRPC when configured).

pub mod proto;
