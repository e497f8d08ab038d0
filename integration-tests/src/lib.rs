//! Shared pieces of the end-to-end tests: running the real Nix (the judge)
//! and generating the test corpus.
//!
//! Owns: test harness code only; no product behaviour lives here.

pub mod corpus;
pub mod judge;
pub mod stack;
pub mod trixie;
pub mod units;
