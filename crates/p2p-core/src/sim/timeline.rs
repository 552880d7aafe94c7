//! Virtual time of the simulated machine: stream clocks, events, hangs, and how long each operation takes.
//!
//! Work is carried out the moment it is queued, but it is *timed* on a
//! virtual clock in nanoseconds so that benchmarks and the thorough probe see
//! believable speeds. Each stream has a clock; so does the host, which stands
//! for "now" from the caller's side: work queued on a stream starts at the
//! later of the stream's clock and the host's, and the host clock moves
//! forward when the caller synchronizes a stream or sees an event done.
//! That way a sequence "copy, synchronize, copy on another stream" takes the
//! sum of the two copies, while two streams chained only by events overlap.

use std::collections::HashMap;

use super::{invalid_handle, not_ready};
use crate::{Error, EventId, Result, StreamId};

/// Launch latency of a copy between two devices (direct or staged by the driver).
pub const PEER_LAUNCH_NS: u64 = 5_000;
/// Launch latency of a copy between a device and host memory.
pub const HOST_LAUNCH_NS: u64 = 8_000;
/// Launch latency of work inside one device (a memset, a same-device copy).
pub const LOCAL_LAUNCH_NS: u64 = 2_000;
/// Speed of work inside one device, in GB/s.
pub const LOCAL_GBPS: f64 = 1000.0;
/// How much slower a direct peer copy is when it touches stream-ordered pool
/// memory that the other device has not been granted (DESIGN.md: 38 vs 394 GB/s).
pub const UNGRANTED_POOL_SLOWDOWN: f64 = 10.0;

/// Virtual time an operation of `bytes` at `gbps` takes, launch included.
pub(super) fn duration_ns(bytes: usize, gbps: f64, launch_ns: u64) -> u64 {
    // 1 GB/s is one byte per nanosecond.
    // The cast saturates, so a nonsensical speed gives a long time, not a panic.
    launch_ns.saturating_add((bytes as f64 / gbps).ceil() as u64)
}

/// Where a stream or a recorded event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// Done at this virtual time (for a stream: its queued work ends then).
    At(u64),
    /// Behind a copy that never finishes.
    Hung,
}

#[derive(Debug)]
pub(super) struct Timeline {
    host_ns: u64,
    streams: HashMap<StreamId, Progress>,
    /// `None`: created but never recorded (done, like CUDA's fresh events).
    events: HashMap<EventId, Option<Progress>>,
    /// Events created with timing enabled (the others refuse `elapsed_ms`, as in CUDA).
    timing_events: std::collections::HashSet<EventId>,
    next_stream_raw: u64,
    next_event_raw: u64,
}

impl Timeline {
    /// A timeline with each device's default stream (`raw` 0).
    pub(super) fn new(device_count: usize) -> Timeline {
        let streams = (0..device_count)
            .map(|device| (StreamId { device, raw: 0 }, Progress::At(0)))
            .collect();
        Timeline {
            host_ns: 0,
            streams,
            events: HashMap::new(),
            timing_events: Default::default(),
            next_stream_raw: 1,
            next_event_raw: 1,
        }
    }

    pub(super) fn create_stream(&mut self, device: usize) -> StreamId {
        let id = StreamId {
            device,
            raw: self.next_stream_raw,
        };
        self.next_stream_raw += 1;
        self.streams.insert(id, Progress::At(self.host_ns));
        id
    }

    pub(super) fn destroy_stream(&mut self, stream: StreamId) -> Result<()> {
        if stream.raw == 0 || self.streams.remove(&stream).is_none() {
            return Err(invalid_handle("cuStreamDestroy"));
        }
        Ok(())
    }

    pub(super) fn create_event(&mut self, device: usize, timing: bool) -> EventId {
        let id = EventId {
            device,
            raw: self.next_event_raw,
        };
        self.next_event_raw += 1;
        self.events.insert(id, None);
        if timing {
            self.timing_events.insert(id);
        }
        id
    }

    pub(super) fn destroy_event(&mut self, event: EventId) -> Result<()> {
        self.timing_events.remove(&event);
        self.events
            .remove(&event)
            .map(|_| ())
            .ok_or_else(|| invalid_handle("cuEventDestroy"))
    }

    /// Where `stream` stands; `call` names the CUDA call for the error if it does not exist.
    pub(super) fn stream(&self, stream: StreamId, call: &'static str) -> Result<Progress> {
        self.streams
            .get(&stream)
            .copied()
            .ok_or_else(|| invalid_handle(call))
    }

    fn event(&self, event: EventId, call: &'static str) -> Result<Option<Progress>> {
        self.events
            .get(&event)
            .copied()
            .ok_or_else(|| invalid_handle(call))
    }

    /// Times an operation of `ns` on `stream`. Returns false (and changes
    /// nothing) if the stream is hung: the operation is never carried out.
    pub(super) fn run(&mut self, stream: StreamId, ns: u64) -> bool {
        let host = self.host_ns;
        match self.streams.get_mut(&stream) {
            Some(Progress::At(clock)) => {
                *clock = (*clock).max(host).saturating_add(ns);
                true
            }
            Some(Progress::Hung) | None => false,
        }
    }

    /// `stream` will never finish what it has queued.
    pub(super) fn hang(&mut self, stream: StreamId) {
        if let Some(progress) = self.streams.get_mut(&stream) {
            *progress = Progress::Hung;
        }
    }

    pub(super) fn record(&mut self, event: EventId, stream: StreamId) -> Result<()> {
        const CALL: &str = "cuEventRecord";
        self.event(event, CALL)?;
        let progress = self.stream(stream, CALL)?;
        if event.device != stream.device {
            // CUDA rejects an event and a stream of different contexts.
            return Err(invalid_handle(CALL));
        }
        let stamp = match progress {
            Progress::At(clock) => Progress::At(clock.max(self.host_ns)),
            Progress::Hung => Progress::Hung,
        };
        self.streams.insert(stream, stamp);
        self.events.insert(event, Some(stamp));
        Ok(())
    }

    pub(super) fn wait(&mut self, stream: StreamId, event: EventId) -> Result<()> {
        const CALL: &str = "cuStreamWaitEvent";
        let stamp = self.event(event, CALL)?;
        let progress = self.stream(stream, CALL)?;
        let after = match (progress, stamp) {
            (Progress::Hung, _) | (_, Some(Progress::Hung)) => Progress::Hung,
            (Progress::At(clock), Some(Progress::At(at))) => Progress::At(clock.max(at)),
            (at, None) => at,
        };
        self.streams.insert(stream, after);
        Ok(())
    }

    /// Whether `event` is done; seeing it done brings the host clock up to it.
    pub(super) fn event_done(&mut self, event: EventId) -> Result<bool> {
        match self.event(event, "cuEventQuery")? {
            None => Ok(true),
            Some(Progress::At(at)) => {
                self.host_ns = self.host_ns.max(at);
                Ok(true)
            }
            Some(Progress::Hung) => Ok(false),
        }
    }

    pub(super) fn elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        const CALL: &str = "cuEventElapsedTime";
        if !self.timing_events.contains(&start) || !self.timing_events.contains(&end) {
            // CUDA: an event created with CU_EVENT_DISABLE_TIMING has no time.
            return Err(invalid_handle(CALL));
        }
        match (self.event(start, CALL)?, self.event(end, CALL)?) {
            (Some(Progress::At(a)), Some(Progress::At(b))) => {
                Ok(((b as f64 - a as f64) / 1e6) as f32)
            }
            (None, _) | (_, None) => Err(invalid_handle(CALL)),
            _ => Err(not_ready(CALL)),
        }
    }

    /// Waits for `stream`: at once, since work is carried out when queued; a
    /// hung stream is a timeout at once instead of a hung caller.
    pub(super) fn synchronize(&mut self, stream: StreamId) -> Result<()> {
        match self.stream(stream, "cuStreamSynchronize")? {
            Progress::At(clock) => {
                self.host_ns = self.host_ns.max(clock);
                Ok(())
            }
            Progress::Hung => Err(Error::Timeout {
                what: format!("simulated hang on cuda:{}", stream.device),
                after_ms: 0,
            }),
        }
    }
}
