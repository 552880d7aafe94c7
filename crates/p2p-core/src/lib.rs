//! Devices, the directed peer-to-peer probe, verdicts and their cache.
//!
//! `p2p-core` answers one question per ordered pair of GPUs: does a direct
//! peer copy from `from` to `to` really deliver the right bytes? It asks the
//! driver what it claims, then checks with a real copy (`probe`), and
//! remembers the answer in a `PeerTable` backed by an on-disk cache.
//!
//! Everything that touches a device goes through the [`Driver`] trait, which
//! has a CUDA backend (`cuda`, on `cudarc`) and a simulated one (`sim`) whose
//! GPUs are host memory with fault injection.

pub mod cache;
pub mod config;
pub mod cuda;
mod device;
mod driver;
mod error;
pub mod files;
mod location;
pub mod memory;
mod peer_access;
pub mod probe;
pub mod sim;
mod table;
mod verdict;

pub use config::{CacheSetting, Config, DisabledPairs};
pub use cuda::CudaDriver;
pub use device::{DeviceInfo, PeerClaim};
pub use driver::{
    poll_until, AllocKind, Backend, CopyDesc, DeviceAddr, Driver, EventId, MemRange, PoolId,
    StreamId,
};
pub use error::{Error, Result};
pub use location::{Location, ParseLocationError};
pub use peer_access::PeerAccess;
pub use probe::{probe_pair, probe_with, ProbeOptions};
pub use sim::SimDriver;
pub use table::{PeerTable, RETRY_BACKOFF_FIRST, RETRY_BACKOFF_MAX};
pub use verdict::{PairState, PeerVerdict, Reason};
