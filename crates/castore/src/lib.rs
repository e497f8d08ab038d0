//! The content-addressed store: blobs named by their BLAKE3 digest and
//! directories as a Merkle tree of `Directory` messages, plus the
//! `snix.castore.v1` gRPC API.
//!
//! Owns: the castore data model, its validation, the Blob/Directory service
//! traits and backends, the castore gRPC server and clients, and ingesting a
//! file system tree. Must not depend on: anything Nix-specific (`nix-compat`,
//! `store`), the FUSE layer, or the worker protocol.

pub mod blobservice;
pub mod channel;
pub mod composition;
pub mod digest;
pub mod directory;
pub mod directoryservice;
pub mod errors;
pub mod grpc_server;
pub mod import;
pub mod proto;
pub mod unix_ms;

pub use digest::B3Digest;
pub use directory::{Directory, Node};
pub use errors::Error;
