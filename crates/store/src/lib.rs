//! Nix store paths mapped onto castore trees: path infos, NAR ingest (NAR →
//! castore) and render (castore → NAR), and the `snix.store.v1` gRPC API.
//!
//! Owns: PathInfo and its validation, the PathInfoService trait and backends,
//! NAR ingest/render, the `snix-store` commands (daemon, import, path-info,
//! dump, mount). Must not depend on: the FUSE layer or the worker protocol.
//! Talks to castore only through its service traits (and so over gRPC when
//! configured). Invariant: nothing is registered before all its content is
//! durably stored.

pub mod cli;
pub mod copy;
pub mod grpc_server;
pub mod import;
pub mod nar;
pub mod pathinfo;
pub mod pathinfoservice;
pub mod proto;
pub mod register;

pub use pathinfo::PathInfo;
