//! Nix store paths mapped onto castore trees: path infos, NAR ingest (NAR →
//! castore) and render (castore → NAR), and the `snix.store.v1` gRPC API.
//!
//! Owns: PathInfo and its validation, the PathInfoService trait and backends,
//! NAR ingest/render, adding and importing paths, copying closures out of a
//! local Nix. Must not depend on: the FUSE layer or the worker protocol.
//! Talks to castore only through its service traits (and so over gRPC when
//! configured). Invariant: nothing is registered before all its content is
//! durably stored.

pub mod composition;
pub mod copy;
pub mod errors;
pub mod gc;
pub mod grpc_server;
pub mod import;
pub mod nar;
pub mod pathinfo;
pub mod pathinfoservice;
pub mod proto;
pub mod register;
pub mod sign;

pub use errors::Error;
pub use pathinfo::PathInfo;
