//! Shared helpers for the benchmarks of `p2p-move`: timing, byte patterns,
//! the report table, raw driver baselines (and the driver's batched copy
//! with each of its options), sub-ranges of device buffers, and the driver
//! calls per kind of move counted on the simulated machine.
//!
//! The criterion CPU benchmarks live in `benches/benches/`; the GPU suite is
//! [`gpu`], run by the `gpu-bench` binary (built into the `cargo xtask
//! gpu-test --bundle` bundle), which compares our routes with raw driver
//! calls on real GPUs (on one GPU, seen as two: [`gpu::Loopback`]).

pub mod cli;
pub mod driver_calls;
pub mod gpu;
pub mod pattern;
pub mod raw_baselines;
pub mod raw_batch;
pub mod raw_ranges;
pub mod report;
pub mod sim_moves;
pub mod timing;
