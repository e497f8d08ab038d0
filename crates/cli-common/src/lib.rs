//! What every binary of the workspace shares: tracing setup, the
//! service-address flags and environment variables (`BLOB_SERVICE_ADDR`,
//! `DIRECTORY_SERVICE_ADDR`, `PATH_INFO_SERVICE_ADDR`) and their defaults,
//! default locations, listeners (unix, TCP, systemd socket activation),
//! serving a gRPC daemon until a signal, sd_notify.
//!
//! Owns: process plumbing only. Must not depend on: any service crate
//! (castore, store, fuse-mount, worker-protocol) — their binaries depend on
//! it, their libraries do not.

pub mod addrs;
pub mod dirs;
pub mod listen;
pub mod process;
pub mod serve;

pub use addrs::{CastoreAddrs, PathInfoAddr, ResolvedCastoreAddrs, ResolvedStoreAddrs, StoreAddrs};
pub use listen::{ListenAddr, Listener};
pub use process::{init_tracing, notify_ready, run_main, shutdown_signal};
pub use serve::{health_and_reflection, serve_until_signal, SocketMode};
