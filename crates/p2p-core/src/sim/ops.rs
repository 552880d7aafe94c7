//! Queued work as values: what each operation does, where it came from, and which bytes it touches.

use std::collections::{HashMap, VecDeque};

use super::fault::Fault;
use super::race::{Space, VClock};
use crate::{DeviceAddr, EventId, MemRange, StreamId};

/// What an operation does when it runs.
#[derive(Clone, Debug)]
pub(super) enum Work {
    /// A device-to-device copy; `fault` and `ns` were fixed when it was queued.
    Peer {
        dst: DeviceAddr,
        src: DeviceAddr,
        bytes: usize,
        fault: Fault,
        ns: u64,
    },
    /// Device to the caller's host memory at `dst`.
    DtoH {
        dst: usize,
        src: DeviceAddr,
        bytes: usize,
        ns: u64,
    },
    /// The caller's host memory at `src` to the device.
    HtoD {
        dst: DeviceAddr,
        src: usize,
        bytes: usize,
        ns: u64,
    },
    Memset {
        dst: DeviceAddr,
        value: u8,
        bytes: usize,
        ns: u64,
    },
    /// Completes version `version` of `event`.
    Record { event: EventId, version: u64 },
    /// Waits for version `version` of `event` (0: never recorded, nothing to wait for).
    Wait { event: EventId, version: u64 },
}

/// One byte range an operation touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Touch {
    pub(super) space: Space,
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) write: bool,
}

impl Touch {
    fn device(addr: DeviceAddr, bytes: usize, write: bool) -> Touch {
        Touch {
            space: Space::Device(addr.device),
            start: addr.addr,
            len: bytes as u64,
            write,
        }
    }

    fn host(addr: usize, bytes: usize, write: bool) -> Touch {
        Touch {
            space: Space::Host,
            start: addr as u64,
            len: bytes as u64,
            write,
        }
    }

    /// Whether this touches any byte of `range`.
    pub(super) fn overlaps(&self, range: &MemRange) -> bool {
        let (space, start, len) = range_parts(range);
        space == self.space
            && self.len > 0
            && len > 0
            && start < self.start.saturating_add(self.len)
            && self.start < start.saturating_add(len)
    }
}

/// `(space, start, len)` of a range.
pub(super) fn range_parts(range: &MemRange) -> (Space, u64, u64) {
    match *range {
        MemRange::Device { addr, len } => (Space::Device(addr.device), addr.addr, len as u64),
        MemRange::Host { addr, len } => (Space::Host, addr as u64, len as u64),
    }
}

pub(super) fn to_range(space: Space, start: u64, len: u64) -> MemRange {
    match space {
        Space::Device(device) => MemRange::Device {
            addr: DeviceAddr {
                device,
                addr: start,
            },
            len: len as usize,
        },
        Space::Host | Space::Pageable(_) => MemRange::Host {
            addr: start as usize,
            len: len as usize,
        },
    }
}

impl Work {
    /// The bytes this work reads and writes.
    pub(super) fn touches(&self) -> Vec<Touch> {
        match *self {
            Work::Peer {
                dst, src, bytes, ..
            } => {
                vec![
                    Touch::device(src, bytes, false),
                    Touch::device(dst, bytes, true),
                ]
            }
            Work::DtoH {
                dst, src, bytes, ..
            } => {
                vec![
                    Touch::device(src, bytes, false),
                    Touch::host(dst, bytes, true),
                ]
            }
            Work::HtoD {
                dst, src, bytes, ..
            } => {
                vec![
                    Touch::host(src, bytes, false),
                    Touch::device(dst, bytes, true),
                ]
            }
            Work::Memset { dst, bytes, .. } => vec![Touch::device(dst, bytes, true)],
            Work::Record { .. } | Work::Wait { .. } => Vec::new(),
        }
    }

    /// The CUDA call that queued it, and its size for reports.
    pub(super) fn describe(&self) -> String {
        match *self {
            Work::Peer { bytes, .. } => format!("cuMemcpyPeerAsync of {bytes} bytes"),
            Work::DtoH { bytes, .. } => format!("cuMemcpyDtoHAsync of {bytes} bytes"),
            Work::HtoD { bytes, .. } => format!("cuMemcpyHtoDAsync of {bytes} bytes"),
            Work::Memset { bytes, .. } => format!("cuMemsetD8Async of {bytes} bytes"),
            Work::Record { .. } => "cuEventRecord".to_string(),
            Work::Wait { .. } => "cuStreamWaitEvent".to_string(),
        }
    }
}

/// A queued operation.
#[derive(Debug)]
pub(super) struct Op {
    pub(super) work: Work,
    /// Host virtual time when it was queued: it cannot start earlier.
    pub(super) queued_at_ns: u64,
    /// The queuing thread's clock (queuing releases).
    pub(super) clock: VClock,
    /// The queuing thread's agent and the driver call's number.
    pub(super) queued_by: usize,
    pub(super) call_number: u64,
    /// The caller's host memory may no longer be touched (its borrow was
    /// released, or it was freed): the op runs without it.
    pub(super) host_detached: bool,
}

/// One stream: its FIFO and where its virtual clock stands.
#[derive(Debug)]
pub(super) struct StreamState {
    pub(super) agent: usize,
    pub(super) queue: VecDeque<Op>,
    /// Virtual time when the last operation run so far ends.
    pub(super) clock_ns: u64,
    /// Race-detector clock.
    pub(super) vclock: VClock,
    /// Destroyed by the caller: no new work, removed once drained.
    pub(super) destroyed: bool,
}

/// Every stream by id, destroyed ones included until they drain.
#[derive(Debug, Default)]
pub(super) struct Streams {
    pub(super) map: HashMap<StreamId, StreamState>,
    pub(super) next_raw: u64,
}

impl Streams {
    /// A live (not destroyed) stream.
    pub(super) fn live(&self, id: StreamId) -> Option<&StreamState> {
        self.map.get(&id).filter(|stream| !stream.destroyed)
    }

    pub(super) fn live_mut(&mut self, id: StreamId) -> Option<&mut StreamState> {
        self.map.get_mut(&id).filter(|stream| !stream.destroyed)
    }

    /// Every stream with work queued, in a fixed order (so that a seed means one schedule).
    pub(super) fn busy(&self) -> Vec<StreamId> {
        let mut busy: Vec<StreamId> = self
            .map
            .iter()
            .filter(|(_, stream)| !stream.queue.is_empty())
            .map(|(&id, _)| id)
            .collect();
        busy.sort_by_key(|id| (id.device, id.raw));
        busy
    }
}
