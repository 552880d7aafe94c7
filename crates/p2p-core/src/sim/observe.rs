//! What the host observes: synchronizes, queries, waits with deadlines on the virtual clock, event times, and borrows handed back.
//!
//! Observing is what makes deferred work run: each call here drives the
//! streams it looks at just far enough. A true answer acquires (the calling
//! thread's race-detector clock joins what it waited for) and brings the
//! host's virtual clock up to when the work ended.

use std::time::Duration;

use super::events::{Done, Status};
use super::exec::Blocked;
use super::machine::Machine;
use super::report::ReportKind;
use super::timeline::POLL_NS;
use super::{invalid_handle, not_ready};
use crate::{Error, EventId, MemRange, Result, StreamId};

/// How a wait ended.
enum Outcome {
    Done,
    /// Not done by the deadline, or never.
    TimedOut,
}

impl Machine {
    fn live_stream(&self, stream: StreamId, call: &'static str) -> Result<()> {
        self.check(stream.device)?;
        self.streams
            .live(stream)
            .map(drop)
            .ok_or_else(|| invalid_handle(call))
    }

    fn current_version(&self, event: EventId, call: &'static str) -> Result<u64> {
        self.check(event.device)?;
        self.events
            .current(event)
            .ok_or_else(|| invalid_handle(call))
    }

    /// The calling thread has seen `stream` finish everything queued so far.
    fn acquire_stream(&mut self, stream: StreamId) {
        let Some(state) = self.streams.map.get(&stream) else {
            return;
        };
        let (clock_ns, vclock) = (state.clock_ns, state.vclock.clone());
        self.host_ns = self.host_ns.max(clock_ns);
        self.agents.current_thread().clock.join(&vclock);
    }

    fn acquire_version(&mut self, done: &Done) {
        self.host_ns = self.host_ns.max(done.stamp_ns);
        self.agents.current_thread().clock.join(&done.clock);
    }

    /// Takes one "not yet" from `slow_queries` if any is left.
    fn slow_query(&mut self) -> bool {
        if self.calls.slow_queries > 0 {
            self.calls.slow_queries -= 1;
            self.host_ns = self.host_ns.saturating_add(POLL_NS);
            true
        } else {
            false
        }
    }

    pub(super) fn synchronize_stream(&mut self, stream: StreamId) -> Result<()> {
        self.live_stream(stream, "cuStreamSynchronize")?;
        loop {
            match self.drive_stream(stream) {
                Ok(()) => break,
                // Blocking: the host waits until the late copy is done.
                Err(Blocked::Late(at)) => self.host_ns = self.host_ns.max(at),
                Err(Blocked::Hung) => {
                    return Err(Error::Timeout {
                        what: format!("simulated hang on cuda:{}", stream.device),
                        after_ms: 0,
                    })
                }
            }
        }
        self.acquire_stream(stream);
        Ok(())
    }

    pub(super) fn event_done(&mut self, event: EventId) -> Result<bool> {
        let version = self.current_version(event, "cuEventQuery")?;
        if self.slow_query() {
            return Ok(false);
        }
        match self.drive_version(event, version) {
            Ok(Status::Done(done)) => {
                self.acquire_version(&done);
                Ok(true)
            }
            Ok(_) => Ok(true),
            Err(_) => {
                self.host_ns = self.host_ns.saturating_add(POLL_NS);
                Ok(false)
            }
        }
    }

    pub(super) fn stream_done(&mut self, stream: StreamId) -> Result<bool> {
        self.live_stream(stream, "cuStreamQuery")?;
        if self.slow_query() {
            return Ok(false);
        }
        match self.drive_stream(stream) {
            Ok(()) => {
                self.acquire_stream(stream);
                Ok(true)
            }
            Err(_) => {
                self.host_ns = self.host_ns.saturating_add(POLL_NS);
                Ok(false)
            }
        }
    }

    /// Polls `poll` (which drives work and says when it ended, or why it is
    /// blocked) on the virtual clock until it is done or `deadline` passed.
    fn wait_virtual(
        &mut self,
        deadline: Duration,
        mut poll: impl FnMut(&mut Machine) -> std::result::Result<u64, Blocked>,
    ) -> Outcome {
        let start = self.host_ns;
        let limit = start.saturating_add(u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX));
        loop {
            if self.host_ns >= limit && self.calls.slow_queries > 0 {
                return Outcome::TimedOut;
            }
            if self.slow_query() {
                continue;
            }
            match poll(self) {
                Ok(ended) if ended <= limit => return Outcome::Done,
                Ok(_) | Err(Blocked::Hung) => break,
                Err(Blocked::Late(at)) if at <= limit => self.host_ns = self.host_ns.max(at),
                Err(Blocked::Late(_)) => break,
            }
        }
        self.host_ns = self.host_ns.max(limit);
        Outcome::TimedOut
    }

    pub(super) fn wait_event(&mut self, event: EventId, deadline: Duration) -> Result<()> {
        let version = self.current_version(event, "cuEventQuery")?;
        let outcome = self.wait_virtual(deadline, |m| match m.drive_version(event, version)? {
            Status::Done(done) => Ok(done.stamp_ns),
            _ => Ok(0),
        });
        match outcome {
            Outcome::Done => {
                if let Status::Done(done) = self.events.status(event, version) {
                    self.acquire_version(&done);
                }
                Ok(())
            }
            Outcome::TimedOut => Err(Error::Timeout {
                what: format!("work on cuda:{}", event.device),
                after_ms: deadline.as_millis() as u64,
            }),
        }
    }

    pub(super) fn wait_stream(&mut self, stream: StreamId, deadline: Duration) -> Result<()> {
        self.live_stream(stream, "cuStreamQuery")?;
        let outcome = self.wait_virtual(deadline, |m| {
            m.drive_stream(stream)?;
            Ok(m.streams.map.get(&stream).map_or(0, |s| s.clock_ns))
        });
        match outcome {
            Outcome::Done => {
                self.acquire_stream(stream);
                Ok(())
            }
            Outcome::TimedOut => Err(Error::Timeout {
                what: format!("work on a stream of cuda:{}", stream.device),
                after_ms: deadline.as_millis() as u64,
            }),
        }
    }

    /// Virtual milliseconds between two completed timing events (does not run anything).
    pub(super) fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        const CALL: &str = "cuEventElapsedTime";
        let a = self.current_version(start, CALL)?;
        let b = self.current_version(end, CALL)?;
        if !self.events.timing(start) || !self.events.timing(end) {
            // CUDA: an event created with CU_EVENT_DISABLE_TIMING has no time.
            return Err(invalid_handle(CALL));
        }
        match (self.events.status(start, a), self.events.status(end, b)) {
            (Status::Done(a), Status::Done(b)) => {
                Ok(((b.stamp_ns as f64 - a.stamp_ns as f64) / 1e6) as f32)
            }
            (Status::NeverRecorded, _) | (_, Status::NeverRecorded) => Err(invalid_handle(CALL)),
            _ => Err(not_ready(CALL)),
        }
    }

    /// A safe API hands `ranges` back to its caller.
    pub(super) fn borrows_released(&mut self, ranges: &[MemRange]) {
        for range in ranges {
            self.host_takes_back(
                range,
                "return of a safe API (borrows_released)".to_string(),
                ReportKind::BorrowReleasedWhileInUse,
            );
        }
    }
}
