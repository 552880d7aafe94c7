//! The README's code blocks, compiled and run as doctests (`cargo test --doc`).
//!
//! Prepared for the crate that can compile every block: the README's blocks
//! use `p2p-core`, `p2p-move` and (one, `no_run`) `p2p-tch`, so this holder
//! belongs in a crate that depends on all of them it names. Wire it in with
//! `#[cfg(doctest)] mod readme;` in that crate's `lib.rs`; the path below is
//! relative to this file, the same from any `crates/<name>/src/`.

/// The README, whose Rust blocks rustdoc runs as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
