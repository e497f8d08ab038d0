//! The Nix worker protocol, daemon side (`nix-daemon`): what a real Nix client
//! speaks over `unix://` or as a local-overlay store's lower store.
//!
//! Owns: protocol encoding/decoding (pure: bytes in, values out — the wire
//! parsers never touch a socket), the op dispatcher, trust and signature
//! policy. Must not depend on: the FUSE layer. Reaches store data only through
//! the store and castore service traits.
//!
//! Built in the worker-protocol issue.
