//! Generated `snix.store.v1` protobuf types and gRPC stubs.

#![allow(clippy::all)]

tonic::include_proto!("snix.store.v1");

/// The encoded file descriptor set of `snix.store.v1`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("store_descriptor");
