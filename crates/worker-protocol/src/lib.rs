//! The Nix worker protocol, daemon side (`nix-daemon`): what a real Nix client
//! speaks over `unix://` or as a local-overlay store's lower store.
//!
//! Owns: protocol encoding/decoding (pure: bytes in, values out — the wire
//! parsers never touch a socket), the op dispatcher, trust and signature
//! policy. Must not depend on: the FUSE layer. Reaches store data only through
//! the store and castore service traits.
//!
//! Map: [`wire`] (primitives, framed streams), [`types`] (path infos, build
//! results, errors, handshake pieces), [`ops`] (operation arguments),
//! [`errors`] (why an operation failed, as the client reads it), [`trust`]
//! (peer credentials vs trusted/allowed users), [`server`] (one
//! connection). The `nix-daemon` binary (`src/bin/nix-daemon`) owns the
//! flags and the listening socket.

pub mod errors;
pub mod info_cache;
pub mod ops;
pub mod server;
pub mod trust;
pub mod types;
pub mod wire;
