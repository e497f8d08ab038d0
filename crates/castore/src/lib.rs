//! The content-addressed store: blobs named by their BLAKE3 digest and
//! directories as a Merkle tree of `Directory` messages, plus the
//! `snix.castore.v1` gRPC API.
//!
//! Owns: the castore data model, its validation, the Blob/Directory service
//! traits and backends, and the castore gRPC server and clients.
//! Must not depend on: anything Nix-specific (`nix-compat`, `store`), the FUSE
//! layer, or the worker protocol.

pub mod proto;
