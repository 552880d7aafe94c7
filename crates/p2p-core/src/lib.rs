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
//!
//! The CUDA version of the bindings is chosen by one feature named as
//! cudarc's (`cuda-12080`, the default; `cuda-12060`, `cuda-13000`, ...), so
//! that a crate using cudarc itself builds both against the same version:
//! such a crate turns off the default and names its own version here. The
//! crate re-exports the [`cudarc`] it was built with.
//!
//! Linking: p2p-core asks cudarc for `fallback-dynamic-loading`, which loads
//! `libcuda` at run time (no driver: [`Error::NoDriver`], never a failure to
//! start) unless another crate in the build asks cudarc for
//! `dynamic-linking` or `static-linking`; cudarc's build script accepts the
//! fallback beside either (it refuses only `dynamic-loading` together with
//! `dynamic-linking`, a pair p2p-core never asks for). A program that links
//! the driver fails to start without one, as it would without p2p-core.

#[cfg(not(any(
    feature = "cuda-11040",
    feature = "cuda-11050",
    feature = "cuda-11060",
    feature = "cuda-11070",
    feature = "cuda-11080",
    feature = "cuda-12000",
    feature = "cuda-12010",
    feature = "cuda-12020",
    feature = "cuda-12030",
    feature = "cuda-12040",
    feature = "cuda-12050",
    feature = "cuda-12060",
    feature = "cuda-12080",
    feature = "cuda-12090",
    feature = "cuda-13000",
    feature = "cuda-13010",
    feature = "cuda-13020",
    feature = "cuda-13030",
    feature = "cuda-13040",
)))]
compile_error!(
    "p2p-core needs one CUDA version feature (cudarc's names, e.g. `cuda-12060`): \
     with `default-features = false`, name the version your cudarc uses"
);

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
pub use cudarc;
pub use device::{DeviceInfo, PeerClaim};
pub use driver::{
    poll_until, AllocKind, Backend, CopyDesc, DeviceAddr, Driver, EventId, MemRange, PoolId,
    StreamId,
};
pub use error::{Error, InvalidDevice, Result, Side};
pub use location::{Location, ParseLocationError};
pub use peer_access::PeerAccess;
pub use probe::{probe_pair, probe_with, ProbeOptions};
pub use sim::SimDriver;
pub use table::{PeerTable, RETRY_BACKOFF_FIRST, RETRY_BACKOFF_MAX};
pub use verdict::{PairState, PeerVerdict, Reason};
