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
pub use p2p_core::Error as CoreError;
pub use p2p_core::Location;
pub use plan::{plan, Chunk, Chunks, Layout, Plan, Route, Why, MAX_CHUNKS};
pub use policy::Policy;
pub use size::{format_size, parse_size, ParseSizeError};
pub use verdicts::{PeerVerdicts, VerdictMatrix};
