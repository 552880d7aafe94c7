//! The README's code blocks, compiled and run as doctests (`cargo test --doc`).
//!
//! It lives in `p2p-tch` because that is the one crate that can compile every
//! block: they use `p2p-core`, `p2p-move` and (one, `no_run`) `p2p-tch`. So
//! they run where libtorch is set up, which `cargo xtask test` does.

/// The README, whose Rust blocks rustdoc runs as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
