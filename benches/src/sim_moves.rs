//! The kinds of move whose driver calls are counted ([`catalogue`]), and
//! [`SimMove`]: one of them set up on a simulated machine, ready to run again
//! and again (for the call counts of `driver_calls` and the CPU time of the
//! `moves` criterion bench).
//!
//! Every case runs on the built-in simulated machine (four GPUs, every pair
//! claimed, 2 -> 3 delivering zeros): peer moves go 0 -> 1, moves that need
//! a working peer path to be missing go 2 -> 3 (staged when via is turned
//! off, else via GPU 0).

use std::fmt;
use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::sim::{CallCounts, Execution, SimOptions};
use p2p_core::{AllocKind, Config, Driver, Location, PeerTable, SimDriver};
use p2p_move::{format_size, MoveSource, MoveTarget, Mover, Policy, RawBytes, Route, StreamOrder};

use crate::pattern;

/// Where one side of a move lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Device memory (`cuMemAlloc`) on this GPU.
    Gpu(usize),
    /// Page-locked host memory.
    Pinned,
    /// Ordinary (pageable) host memory: a `Vec<u8>`.
    Pageable,
}

/// Which API a case calls, and with what ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `Mover::copy`: returns once the bytes are there.
    Blocking,
    /// `Mover::copy_async` then `Transfer::wait`, with a caller stream on
    /// the source and/or destination device in the `StreamOrder`.
    Async {
        /// A caller stream on the source device (`StreamOrder::src_stream`).
        src_stream: bool,
        /// A caller stream on the destination device (`StreamOrder::dst_stream`).
        dst_stream: bool,
    },
    /// `Mover::copy_batch` of `items` pairs.
    Batch,
}

/// One kind of move: what is moved where, how, and the route it must take.
#[derive(Clone, Debug, PartialEq)]
pub struct MoveCase {
    /// Short name, unique in the catalogue (the criterion id and the table's first column).
    pub name: &'static str,
    /// Where the bytes are.
    pub from: Place,
    /// Where they go.
    pub to: Place,
    /// Bytes of each item.
    pub bytes: usize,
    /// Items moved at once (1 but for batches).
    pub items: usize,
    /// The API called.
    pub call: Call,
    /// Whether the policy allows a hop through a third GPU.
    pub allow_via: bool,
    /// The route the planner must choose (checked when the case is set up).
    pub route: Route,
}

impl MoveCase {
    /// The case's size, for people: `4 KiB`, or `256 x 16 KiB` for a batch.
    pub fn size(&self) -> String {
        if self.items == 1 {
            format_size(self.bytes)
        } else {
            format!("{} x {}", self.items, format_size(self.bytes))
        }
    }

    /// Bytes moved by one run of the case.
    pub fn total_bytes(&self) -> usize {
        self.bytes * self.items
    }
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Items of the batch cases, and the size of each.
pub const BATCH_ITEMS: usize = 256;
/// Bytes of each item of the batch cases.
pub const BATCH_ITEM_BYTES: usize = 16 * KIB;

/// Every kind of move counted, in the order of the table.
pub fn catalogue() -> Vec<MoveCase> {
    let one = |name, from, to, bytes, call, allow_via, route| MoveCase {
        name,
        from,
        to,
        bytes,
        items: 1,
        call,
        allow_via,
        route,
    };
    let peer = |name, call| {
        one(
            name,
            Place::Gpu(0),
            Place::Gpu(1),
            4 * KIB,
            call,
            true,
            Route::Peer,
        )
    };
    let staged = |name, bytes| {
        one(
            name,
            Place::Gpu(2),
            Place::Gpu(3),
            bytes,
            Call::Blocking,
            false,
            Route::Staged,
        )
    };
    let via = |name, bytes| {
        let route = Route::Via { gpu: 0 };
        one(
            name,
            Place::Gpu(2),
            Place::Gpu(3),
            bytes,
            Call::Blocking,
            true,
            route,
        )
    };
    let host =
        |name, from, to, bytes, route| one(name, from, to, bytes, Call::Blocking, true, route);
    let asynchronous = |src_stream, dst_stream| Call::Async {
        src_stream,
        dst_stream,
    };
    let batch = |name, from, to, allow_via, route| MoveCase {
        name,
        from,
        to,
        bytes: BATCH_ITEM_BYTES,
        items: BATCH_ITEMS,
        call: Call::Batch,
        allow_via,
        route,
    };
    vec![
        peer("peer-blocking", Call::Blocking),
        peer("peer-async", asynchronous(false, false)),
        peer("peer-async-dst-stream", asynchronous(false, true)),
        peer("peer-async-both-streams", asynchronous(true, true)),
        staged("staged-4k", 4 * KIB),
        staged("staged-64k", 64 * KIB),
        staged("staged-1m", MIB),
        staged("staged-64m", 64 * MIB),
        via("via-4k", 4 * KIB),
        via("via-64m", 64 * MIB),
        host(
            "h2d-pinned",
            Place::Pinned,
            Place::Gpu(1),
            4 * KIB,
            Route::HostToDevice,
        ),
        host(
            "h2d-pageable-4k",
            Place::Pageable,
            Place::Gpu(1),
            4 * KIB,
            Route::HostToDevice,
        ),
        host(
            "h2d-pageable-64m",
            Place::Pageable,
            Place::Gpu(1),
            64 * MIB,
            Route::HostToDevice,
        ),
        host(
            "d2h-pinned",
            Place::Gpu(0),
            Place::Pinned,
            4 * KIB,
            Route::DeviceToHost,
        ),
        host(
            "d2h-pageable-4k",
            Place::Gpu(0),
            Place::Pageable,
            4 * KIB,
            Route::DeviceToHost,
        ),
        host(
            "d2h-pageable-64m",
            Place::Gpu(0),
            Place::Pageable,
            64 * MIB,
            Route::DeviceToHost,
        ),
        batch(
            "batch-peer",
            Place::Gpu(0),
            Place::Gpu(1),
            true,
            Route::Peer,
        ),
        batch(
            "batch-staged",
            Place::Gpu(2),
            Place::Gpu(3),
            false,
            Route::Staged,
        ),
        batch(
            "batch-via",
            Place::Gpu(2),
            Place::Gpu(3),
            true,
            Route::Via { gpu: 0 },
        ),
        batch(
            "batch-h2d-pinned",
            Place::Pinned,
            Place::Gpu(1),
            true,
            Route::HostToDevice,
        ),
    ]
}

/// Memory of one side of a move, owned by the rig.
#[derive(Debug)]
enum Memory {
    Device(DeviceBuffer),
    Pinned(PinnedBuffer),
    Pageable(Vec<u8>),
}

impl Memory {
    fn new(driver: &Arc<dyn Driver>, place: Place, bytes: usize) -> p2p_core::Result<Memory> {
        Ok(match place {
            Place::Gpu(device) => {
                Memory::Device(DeviceBuffer::new(driver, device, bytes, AllocKind::Plain)?)
            }
            Place::Pinned => Memory::Pinned(PinnedBuffer::new(driver, bytes)?),
            Place::Pageable => Memory::Pageable(vec![0; bytes]),
        })
    }

    fn write(&mut self, data: &[u8], driver: &Arc<dyn Driver>) -> p2p_core::Result<()> {
        match self {
            Memory::Device(buffer) => {
                let stream = Stream::new(driver, buffer.device())?;
                buffer.write_from_slice(data, &stream)
            }
            Memory::Pinned(buffer) => {
                buffer.as_mut_slice().copy_from_slice(data);
                Ok(())
            }
            Memory::Pageable(bytes) => {
                bytes.copy_from_slice(data);
                Ok(())
            }
        }
    }

    fn read(&self, driver: &Arc<dyn Driver>) -> p2p_core::Result<Vec<u8>> {
        match self {
            Memory::Device(buffer) => buffer.read_to_vec(&Stream::new(driver, buffer.device())?),
            Memory::Pinned(buffer) => Ok(buffer.as_slice().to_vec()),
            Memory::Pageable(bytes) => Ok(bytes.clone()),
        }
    }
}

// SAFETY: delegates to the impls of the owned buffer, which describe memory
// the enum owns for as long as it is borrowed.
unsafe impl MoveSource for Memory {
    fn raw_bytes(&self) -> RawBytes {
        match self {
            Memory::Device(buffer) => buffer.raw_bytes(),
            Memory::Pinned(buffer) => buffer.raw_bytes(),
            Memory::Pageable(bytes) => bytes.raw_bytes(),
        }
    }
    fn byte_len(&self) -> usize {
        match self {
            Memory::Device(buffer) => buffer.byte_len(),
            Memory::Pinned(buffer) => buffer.byte_len(),
            Memory::Pageable(bytes) => bytes.byte_len(),
        }
    }
}

// SAFETY: as above, through the exclusive borrow of the owned buffer.
unsafe impl MoveTarget for Memory {
    fn raw_bytes_mut(&mut self) -> RawBytes {
        match self {
            Memory::Device(buffer) => buffer.raw_bytes_mut(),
            Memory::Pinned(buffer) => buffer.raw_bytes_mut(),
            Memory::Pageable(bytes) => bytes.raw_bytes_mut(),
        }
    }
}

/// Why a case could not be set up or run.
#[derive(Debug)]
pub enum SimMoveError {
    /// The simulated machine refused a setup call.
    Setup(p2p_core::Error),
    /// The move itself failed.
    Move(p2p_move::Error),
    /// The planner chose another route than the case names.
    WrongRoute {
        /// The case.
        case: &'static str,
        /// The route the planner chose.
        planned: Route,
        /// Why it chose it.
        reason: String,
    },
    /// The destination does not hold the source's bytes after the moves.
    WrongBytes {
        /// The case.
        case: &'static str,
        /// The item whose destination differs.
        item: usize,
    },
}

impl fmt::Display for SimMoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimMoveError::Setup(err) => write!(f, "setting up a simulated move: {err}"),
            SimMoveError::Move(err) => write!(f, "a simulated move failed: {err}"),
            SimMoveError::WrongRoute {
                case,
                planned,
                reason,
            } => write!(f, "{case}: planned {planned:?} ({reason})"),
            SimMoveError::WrongBytes { case, item } => {
                write!(f, "{case}: item {item} does not hold the source's bytes")
            }
        }
    }
}

impl std::error::Error for SimMoveError {}

impl From<p2p_core::Error> for SimMoveError {
    fn from(err: p2p_core::Error) -> Self {
        SimMoveError::Setup(err)
    }
}

impl From<p2p_move::Error> for SimMoveError {
    fn from(err: p2p_move::Error) -> Self {
        SimMoveError::Move(err)
    }
}

/// A case set up on its own simulated machine: the mover (pairs already
/// probed), the sources (filled with a pattern), the targets and the
/// caller's streams.
#[derive(Debug)]
pub struct SimMove {
    case: MoveCase,
    sim: Arc<SimDriver>,
    driver: Arc<dyn Driver>,
    mover: Mover,
    sources: Vec<Memory>,
    targets: Vec<Memory>,
    src_stream: Option<Stream>,
    dst_stream: Option<Stream>,
}

impl SimMove {
    /// Sets `case` up on a fresh built-in machine run as `execution` says
    /// (with the default schedule seed when deferred).
    pub fn new(case: &MoveCase, execution: Execution) -> Result<SimMove, SimMoveError> {
        let options = SimOptions::default()
            .seed(p2p_core::sim::DEFAULT_SEED)
            .execution(execution);
        let sim = Arc::new(SimDriver::with_options(
            p2p_core::sim::builtin_topology(),
            options,
        ));
        let driver: Arc<dyn Driver> = sim.clone();
        let table = Arc::new(PeerTable::new(driver.clone(), Config::default()));
        let policy = Policy {
            allow_via: case.allow_via,
            ..Policy::default()
        };
        let mover = Mover::new(table, policy)?;
        let location = |place| match place {
            Place::Gpu(device) => Location::Cuda(device),
            Place::Pinned | Place::Pageable => Location::Host,
        };
        // Probes the pairs now, so that the moves counted find their verdicts known.
        let planned = mover.plan(location(case.from), location(case.to), case.bytes)?;
        if planned.route != case.route {
            return Err(SimMoveError::WrongRoute {
                case: case.name,
                planned: planned.route,
                reason: planned.reason(),
            });
        }
        let mut sources = Vec::with_capacity(case.items);
        let mut targets = Vec::with_capacity(case.items);
        for item in 0..case.items {
            let mut source = Memory::new(&driver, case.from, case.bytes)?;
            source.write(&pattern::pattern(case.bytes, item as u64), &driver)?;
            sources.push(source);
            targets.push(Memory::new(&driver, case.to, case.bytes)?);
        }
        let stream_on = |wanted: bool, place| match (wanted, place) {
            (true, Place::Gpu(device)) => Stream::new(&driver, device).map(Some),
            _ => Ok(None),
        };
        let (src_stream, dst_stream) = match case.call {
            Call::Async {
                src_stream,
                dst_stream,
            } => (
                stream_on(src_stream, case.from)?,
                stream_on(dst_stream, case.to)?,
            ),
            Call::Blocking | Call::Batch => (None, None),
        };
        Ok(SimMove {
            case: case.clone(),
            sim,
            driver,
            mover,
            sources,
            targets,
            src_stream,
            dst_stream,
        })
    }

    /// The case this rig runs.
    pub fn case(&self) -> &MoveCase {
        &self.case
    }

    /// Driver calls the machine has seen so far, setup included.
    pub fn call_counts(&self) -> CallCounts {
        self.sim.call_counts()
    }

    /// Runs the move once and returns when its bytes are there.
    pub fn run(&mut self) -> Result<(), SimMoveError> {
        match self.case.call {
            Call::Blocking => {
                if let (Some(src), Some(dst)) = (self.sources.first(), self.targets.first_mut()) {
                    self.mover.copy(src, dst)?;
                }
            }
            Call::Async { .. } => {
                let order = StreamOrder {
                    src_stream: self.src_stream.as_ref().map(Stream::id),
                    dst_stream: self.dst_stream.as_ref().map(Stream::id),
                };
                if let (Some(src), Some(dst)) = (self.sources.first(), self.targets.first_mut()) {
                    // SAFETY: the transfer is waited for at once, never leaked.
                    let transfer = unsafe { self.mover.copy_async(src, dst, order)? };
                    transfer.wait()?;
                }
            }
            Call::Batch => {
                self.mover
                    .copy_batch(self.sources.iter().zip(self.targets.iter_mut()))?;
            }
        }
        Ok(())
    }

    /// Checks that every target holds its source's pattern, and that the
    /// simulated machine saw no race or misuse.
    pub fn check(&self) -> Result<(), Box<dyn std::error::Error>> {
        for (item, target) in self.targets.iter().enumerate() {
            if target.read(&self.driver)? != pattern::pattern(self.case.bytes, item as u64) {
                return Err(Box::new(SimMoveError::WrongBytes {
                    case: self.case.name,
                    item,
                }));
            }
        }
        self.sim.check_clean()?;
        Ok(())
    }
}
