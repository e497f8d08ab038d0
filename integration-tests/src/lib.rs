//! Shared pieces of the end-to-end tests: running the real Nix (the judge),
//! other Nix versions in Debian chroots, our binaries and the NixOS modules' units as
//! processes, a hand-written worker-protocol client, and the test corpus.
//!
//! Owns: test harness code only; no product behaviour lives here.
#![allow(clippy::unwrap_used)]

pub mod chroots;
pub mod corpus;
pub mod judge;
pub mod raw_client;
pub mod stack;
pub mod units;
