//! Devices, the directed peer-to-peer probe, verdicts and their cache.
//!
//! `p2p-core` answers one question per ordered pair of GPUs: does a direct
//! peer copy from `from` to `to` really deliver the right bytes? It asks the
//! driver what it claims, then checks with a real copy (`probe`), and
//! remembers the answer in a `PeerTable` backed by an on-disk cache.
//!
//! Everything that touches a device goes through the [`Driver`] trait, which
//! has a CUDA backend ([`CudaDriver`], on `cudarc`) and a simulated one
//! ([`SimDriver`]) whose GPUs are host memory with fault injection.
//!
//! # Which pairs work
//!
//! Make a driver, give it to a [`PeerTable`] with a [`Config`], and ask for
//! verdicts. On the simulator, with a machine described in a topology
//! string (the format is on [`sim::Topology`]):
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//! use p2p_core::sim::Topology;
//! use p2p_core::{Config, Driver, PeerTable, Reason, SimDriver};
//!
//! // Two GPUs: 0 -> 1 is claimed but flips bits, 1 -> 0 works.
//! let topology = Topology::parse(
//!     r#"
//!     [[gpu]]
//!     [[gpu]]
//!     [[peer]]
//!     from = 0
//!     to = 1
//!     fault = "corrupt"
//!     [[peer]]
//!     from = 1
//!     to = 0
//!     "#,
//!     Path::new("two-gpus.toml"),
//! )?;
//! let driver: Arc<dyn Driver> = Arc::new(SimDriver::new(topology));
//! let table = PeerTable::new(driver, Config::default());
//!
//! let verdict = table.verdict(0, 1)?;
//! println!("{verdict}"); // cuda:0 -> cuda:1: corrupt: first bad byte at offset 1234 (...)
//! assert!(matches!(verdict.reason, Reason::Corrupt { offset: 1234, .. }));
//! assert!(table.verdict(1, 0)?.is_verified());
//! # Ok::<(), p2p_core::Error>(())
//! ```
//!
//! On real GPUs the same with [`CudaDriver`] and the operator's settings
//! ([`Config::from_env`]: `P2P_DISABLE`, the on-disk cache, ...). Without a
//! driver, [`CudaDriver::new`] is [`Error::NoDriver`]; falling back to
//! [`SimDriver::builtin`] is what the `p2p` command does:
//!
//! ```no_run
//! use std::sync::Arc;
//! use p2p_core::{Config, CudaDriver, Driver, Error, PeerTable, SimDriver};
//!
//! let driver: Arc<dyn Driver> = match CudaDriver::new() {
//!     Ok(cuda) => Arc::new(cuda),
//!     Err(err @ Error::NoDriver { .. }) => {
//!         eprintln!("{err}");
//!         Arc::new(SimDriver::builtin())
//!     }
//!     Err(err) => return Err(err),
//! };
//! let table = PeerTable::new(driver, Config::from_env()?);
//! for verdict in table.probe_all()? {
//!     println!("{verdict}");
//! }
//! # Ok::<(), p2p_core::Error>(())
//! ```
//!
//! Moving bytes by the route the verdicts allow is the `p2p-move` crate's
//! job; this crate only judges.
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

#![deny(missing_docs)]

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
    poll_until, AllocKind, Backend, CopyDesc, DeviceAddr, Driver, EventId, HostCopyDesc, MemRange,
    PoolId, StreamId,
};
pub use error::{Error, InvalidDevice, Result, Side};
pub use location::{Location, ParseLocationError};
pub use peer_access::PeerAccess;
pub use probe::{probe_pair, probe_with, ProbeOptions};
pub use sim::SimDriver;
pub use table::{PeerTable, RETRY_BACKOFF_FIRST, RETRY_BACKOFF_MAX};
pub use verdict::{PairState, PeerVerdict, Reason};
