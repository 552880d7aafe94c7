//! Plans and carries out tensor moves between CUDA devices, by the fastest
//! path known to deliver correct bytes.
//!
//! The work is split in two, in the style of `quinn-proto`:
//!
//! * the **planner** ([`plan`]) is a pure function. Given where the bytes
//!   are and where they go, how many there are, the peer verdicts
//!   ([`PeerVerdicts`], answered by `p2p-core`'s `PeerTable`) and a
//!   [`Policy`], it returns a [`Plan`]: a [`Route`] (no-op, host-to-device,
//!   device-to-host, direct peer copy, staged through pinned host memory, or
//!   via a third GPU), a [`Layout`] (how the bytes are cut into [`Chunk`]s and
//!   how many are in flight), and [`Why`] the route was chosen. It
//!   touches no device and does no I/O, so it is property-tested over
//!   generated machines and verdict matrices;
//! * the **executor** ([`Mover`]) turns a plan into a schedule (a value:
//!   copies, fences and waits on lanes), and one submitter carries the
//!   schedule out through `p2p-core`'s `Driver`.
//!
//! [`parse_size`] and [`format_size`] read and write byte counts for people
//! (`8 MiB`).
//!
//! What a move needs from `p2p-core` is re-exported here (the buffers,
//! [`Stream`], [`StreamId`], [`DeviceAddr`], [`PeerTable`], [`Config`], the
//! [`Driver`] trait and its backends [`CudaDriver`] and [`SimDriver`]), so a
//! user of this crate needs no direct `p2p-core` import. Errors come in
//! layers: [`Error::Core`] wraps `p2p-core`'s [`CoreError`], and the checks
//! that every layer shares ([`InvalidDevice`], [`CoreError::SizeMismatch`])
//! have one type each, naming the [`Side`] of the copy at fault.
//!
//! # Example
//!
//! A move between two GPUs of the built-in simulated machine:
//!
//! ```
//! use std::sync::Arc;
//! use p2p_move::{AllocKind, Config, DeviceBuffer, Driver, Mover, PeerTable, Policy, SimDriver};
//!
//! fn main() -> Result<(), p2p_move::Error> {
//!     let driver: Arc<dyn Driver> = Arc::new(SimDriver::builtin());
//!     let table = Arc::new(PeerTable::new(driver.clone(), Config::default()));
//!     let mover = Mover::new(table, Policy::default())?;
//!
//!     let src = DeviceBuffer::new(&driver, 0, 1 << 20, AllocKind::Plain)?;
//!     let mut dst = DeviceBuffer::new(&driver, 1, 1 << 20, AllocKind::Plain)?;
//!     match mover.copy(&src, &mut dst) {
//!         Ok(plan) => println!("moved by {}", plan.route),
//!         // The message, not the debug form: "the destination cuda:7 ...".
//!         Err(err) => eprintln!("move failed: {err}"),
//!     }
//!
//!     // A GPU that does not exist is a typed error, not a panic.
//!     let err = mover.plan(p2p_move::Location::Host, p2p_move::Location::Cuda(7), 16).unwrap_err();
//!     println!("{err}");
//!     assert_eq!(err.invalid_device().map(|invalid| invalid.ordinal), Some(7));
//!     Ok(())
//! }
//! ```

#![deny(missing_docs)]

mod cudarc_slices;
mod error;
mod exec;
mod plan;
mod policy;
mod size;
mod verdicts;

pub use error::{Error, PlanError, Result};
pub use exec::{
    BatchCompletion, BatchTransfer, Completion, EventPool, Fence, Leaked, MoveSource, MoveTarget,
    Mover, Parked, RawBytes, RawRange, StreamOrder, Transfer,
};
pub use p2p_core::cudarc;
pub use p2p_core::memory::{DeviceBuffer, Event, PinnedBuffer, Stream};
pub use p2p_core::Error as CoreError;
pub use p2p_core::{
    AllocKind, CacheSetting, Config, CudaDriver, DeviceAddr, DisabledPairs, Driver, EventId,
    InvalidDevice, Location, MemRange, PeerTable, Side, SimDriver, StreamId,
};
pub use plan::{plan, Chunk, Chunks, Layout, Plan, Route, Why, MAX_CHUNKS};
pub use policy::Policy;
pub use size::{format_size, parse_size, ParseSizeError};
pub use verdicts::{PeerVerdicts, VerdictMatrix};
