//! What every binary of the workspace shares: tracing setup, the
//! service-address flags and environment variables (`BLOB_SERVICE_ADDR`,
//! `DIRECTORY_SERVICE_ADDR`, `PATH_INFO_SERVICE_ADDR`), listeners (unix, TCP,
//! systemd socket activation), sd_notify and signal handling.
//!
//! Owns: process plumbing only. Must not depend on: any service crate
//! (castore, store, fuse-mount, worker-protocol) — they depend on it.
//!
//! Filled in by the castore issue, with the first daemon.
