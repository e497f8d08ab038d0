//! Generated `snix.castore.v1` protobuf types and gRPC stubs.

#![allow(clippy::all)]

tonic::include_proto!("snix.castore.v1");

/// The encoded file descriptor set of `snix.castore.v1`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("castore_descriptor");
