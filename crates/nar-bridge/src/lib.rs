//! nar-bridge: the store served as a Nix HTTP binary cache, over the store
//! daemon's gRPC APIs (or embedded backends).
//!
//! `urls.rs` names what a request path is and the NAR URLs we write;
//! `range.rs` answers `Range` headers; `narinfo.rs` turns a path info into
//! a narinfo (signed on the fly); `body.rs` streams a NAR (rendered from the
//! castore, compressed, cut to a range) without holding it; `server.rs` is
//! the HTTP router; `errors.rs` the crate's error and its one mapping to HTTP
//! status.
//!
//! Owns: HTTP. Knows no command line; the `nar-bridge` binary does.

pub mod body;
pub mod errors;
pub mod narinfo;
pub mod range;
pub mod server;
pub mod urls;

pub use errors::BridgeError;
pub use server::{router, Bridge};
