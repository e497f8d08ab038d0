//! What every binary of the workspace shares: tracing setup, the
//! service-address flags and environment variables (`BLOB_SERVICE_ADDR`,
//! `DIRECTORY_SERVICE_ADDR`, `PATH_INFO_SERVICE_ADDR`), default locations,
//! listeners (unix, TCP, systemd socket activation), sd_notify and signal
//! handling.
//!
//! Owns: process plumbing only. Must not depend on: any service crate
//! (castore, store, fuse-mount, worker-protocol) — they depend on it.

pub mod addrs;
pub mod dirs;
pub mod listen;
pub mod process;

pub use addrs::{CastoreAddrs, PathInfoAddr};
pub use listen::{ListenAddr, Listener};
pub use process::{init_tracing, notify_ready, run_main, shutdown_signal};
