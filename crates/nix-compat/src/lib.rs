//! Nix's data formats, byte for byte as the real Nix writes and reads them:
//! nixbase32, hashes, store paths and content addresses, NAR, narinfo,
//! ed25519 signatures, and the `exportReferencesGraph` closure JSON.
//!
//! Owns: pure format code — bytes in, values out. Must not depend on any other
//! crate of this workspace, on gRPC, or on sockets; the only I/O here are the
//! thin `std::io`/tokio and file-system front-ends of the NAR code.

pub mod closure;
pub mod content_address;
pub mod hash;
pub mod nar;
pub mod narinfo;
pub mod nixbase32;
pub mod signing;
pub mod store_path;

pub use content_address::ContentAddress;
pub use hash::{HashAlgo, NixHash};
pub use store_path::StorePath;
