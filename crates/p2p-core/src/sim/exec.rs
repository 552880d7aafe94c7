//! Running queued work: which operation may run, carrying one out (bytes, time, race checks), and driving streams toward what the host waits for.
//!
//! An operation runs only at the head of its stream (FIFO). A wait runs once
//! the version it waits for has run; a hung copy never runs; a late copy
//! runs once the host's virtual clock has passed its end. Within those
//! rules, background work is the scheduler's choice ([`Machine::background`]);
//! what the host observes is driven just far enough ([`Machine::drive_stream`],
//! [`Machine::drive_version`]).

use std::sync::Arc;

use super::device_memory::poison;
use super::events::{Done, Status};
use super::fault::{damage, Fault};
use super::host_memory::{copy_from_host, copy_to_host, HostKind};
use super::machine::Machine;
use super::ops::{to_range, Op, Touch, Work};
use super::options::Execution;
use super::race::{Access, Space, VClock};
use super::report::{AccessKind, Actor, ReportKind, SimReport};
use super::timeline::ms_to_ns;
use crate::{DeviceAddr, EventId, MemRange, StreamId};

/// What the head of a stream can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Head {
    Empty,
    Runnable,
    /// A wait whose version is recorded, not yet run, on this stream.
    WaitsFor(StreamId),
    Blocked(Blocked),
}

/// Why work cannot run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Blocked {
    /// Behind a copy that never finishes.
    Hung,
    /// Behind a late copy that finishes at this virtual time.
    Late(u64),
}

impl Machine {
    fn head(&self, id: StreamId) -> Head {
        let Some(stream) = self.streams.map.get(&id) else {
            return Head::Empty;
        };
        let Some(op) = stream.queue.front() else {
            return Head::Empty;
        };
        match op.work {
            Work::Wait { event, version } => match self.events.status(event, version) {
                Status::Pending(on) => Head::WaitsFor(on),
                Status::Done(_) | Status::NeverRecorded => Head::Runnable,
            },
            Work::Peer {
                fault: Fault::Hang, ..
            } => Head::Blocked(Blocked::Hung),
            Work::Peer {
                fault: Fault::Late { ms },
                ns,
                ..
            } => {
                let end = stream
                    .clock_ns
                    .max(op.queued_at_ns)
                    .saturating_add(ns)
                    .saturating_add(ms_to_ns(ms));
                if self.host_ns >= end {
                    Head::Runnable
                } else {
                    Head::Blocked(Blocked::Late(end))
                }
            }
            _ => Head::Runnable,
        }
    }

    /// Carries out one operation on the way to `target` making progress:
    /// `target`'s head, or the record its head waits for (transitively).
    /// `Ok(false)`: `target` has nothing queued.
    fn advance(&mut self, target: StreamId) -> Result<bool, Blocked> {
        let mut id = target;
        // Waits form no cycles (a wait names a version recorded before it
        // was queued); the bound only guards against a bug here.
        for _ in 0..=self.streams.map.len() {
            match self.head(id) {
                Head::Empty => return Ok(false),
                Head::Runnable => {
                    self.step(id);
                    return Ok(true);
                }
                Head::WaitsFor(on) => id = on,
                Head::Blocked(blocked) => return Err(blocked),
            }
        }
        Err(Blocked::Hung)
    }

    /// Runs `stream` until everything queued on it so far has run.
    pub(super) fn drive_stream(&mut self, stream: StreamId) -> Result<(), Blocked> {
        while self
            .streams
            .map
            .get(&stream)
            .is_some_and(|state| !state.queue.is_empty())
        {
            self.advance(stream)?;
        }
        Ok(())
    }

    /// Runs what version `version` of `event` needs, and says where it stands then.
    pub(super) fn drive_version(
        &mut self,
        event: EventId,
        version: u64,
    ) -> Result<Status, Blocked> {
        loop {
            match self.events.status(event, version) {
                Status::Pending(on) => {
                    if !self.advance(on)? {
                        // The record is not on the stream it names: cannot happen.
                        return Err(Blocked::Hung);
                    }
                }
                other => return Ok(other),
            }
        }
    }

    /// Streams whose head can run now.
    fn runnable(&self) -> Vec<StreamId> {
        self.streams
            .busy()
            .into_iter()
            .filter(|&id| self.head(id) == Head::Runnable)
            .collect()
    }

    /// The scheduler's background work at a driver call (deferred mode).
    pub(super) fn background(&mut self) {
        if self.execution != Execution::Deferred {
            return;
        }
        for _ in 0..self.scheduler.background_steps() {
            let runnable = self.runnable();
            if runnable.is_empty() {
                return;
            }
            let pick = self.scheduler.pick(runnable.len());
            self.step(runnable[pick]);
        }
    }

    /// Runs everything that can run (eager mode after each call, and `settle`).
    pub(super) fn run_all(&mut self) {
        loop {
            let runnable = self.runnable();
            if runnable.is_empty() {
                return;
            }
            for id in runnable {
                while self.head(id) == Head::Runnable {
                    self.step(id);
                }
            }
        }
    }

    /// Pops the head of `id` and carries it out.
    fn step(&mut self, id: StreamId) {
        let Some(stream) = self.streams.map.get_mut(&id) else {
            return;
        };
        let Some(op) = stream.queue.pop_front() else {
            return;
        };
        // Queuing released the thread's clock; running acquires it.
        stream.vclock.join(&op.clock);
        let agent = stream.agent;
        let epoch = stream.vclock.tick(agent);
        let start = stream.clock_ns.max(op.queued_at_ns);
        let vclock = stream.vclock.clone();
        let drained = stream.destroyed && stream.queue.is_empty();
        match op.work {
            Work::Record { event, version } => {
                stream.clock_ns = start;
                self.events.complete(
                    event,
                    version,
                    Done {
                        stamp_ns: start,
                        clock: vclock,
                    },
                );
            }
            Work::Wait { event, version } => {
                if let Status::Done(done) = self.events.status(event, version) {
                    stream.clock_ns = stream.clock_ns.max(done.stamp_ns);
                    stream.vclock.join(&done.clock);
                }
                self.events.remove_waiter(event, version);
            }
            ref work => {
                let late = match *work {
                    Work::Peer {
                        fault: Fault::Late { ms },
                        ..
                    } => ms_to_ns(ms),
                    _ => 0,
                };
                let ns = match *work {
                    Work::Peer { ns, .. }
                    | Work::DtoH { ns, .. }
                    | Work::HtoD { ns, .. }
                    | Work::Memset { ns, .. } => ns,
                    Work::Record { .. } | Work::Wait { .. } => 0,
                };
                stream.clock_ns = start.saturating_add(ns).saturating_add(late);
                self.check_races(&op, agent, epoch, &vclock);
                self.carry_out(&op);
            }
        }
        if drained {
            self.streams.map.remove(&id);
        }
    }

    fn actor(&self, op: &Op, agent: usize, touch: &Touch) -> Actor {
        Actor {
            what: op.work.describe(),
            access: if touch.write {
                AccessKind::Write
            } else {
                AccessKind::Read
            },
            on: self.agents.name(agent).to_string(),
            called_by: self.agents.name(op.queued_by).to_string(),
            call_number: op.call_number,
        }
    }

    fn check_races(&mut self, op: &Op, agent: usize, epoch: u32, clock: &VClock) {
        for mut touch in op.work.touches() {
            if touch.space == Space::Host {
                if op.host_detached {
                    continue;
                }
                if self.pinned.classify(touch.start as usize) == HostKind::Pageable {
                    touch.space = Space::Pageable(op.queued_by);
                }
            }
            let actor = Arc::new(self.actor(op, agent, &touch));
            let access = Access {
                space: touch.space,
                start: touch.start,
                len: touch.len,
                write: touch.write,
                agent,
                epoch,
                clock,
                actor: actor.clone(),
            };
            for conflict in self.history.access(&access, true) {
                self.reports.push(SimReport {
                    kind: ReportKind::Race,
                    range: to_range(touch.space, conflict.start, conflict.end - conflict.start),
                    first: (*conflict.earlier).clone(),
                    second: Some((*actor).clone()),
                });
            }
        }
    }

    fn use_after_free(&mut self, op: &Op, range: MemRange, write: bool) {
        let touch = op
            .work
            .touches()
            .into_iter()
            .find(|t| t.write == write)
            .unwrap_or(Touch {
                space: Space::Host,
                start: 0,
                len: 0,
                write,
            });
        // The stream the op ran on is not kept in `Op`; name the queuing thread.
        let actor = self.actor(op, op.queued_by, &touch);
        self.reports.push(SimReport {
            kind: ReportKind::UseAfterFree,
            range,
            first: actor,
            second: None,
        });
    }

    /// Device bytes for reading, or poison (and a report) if freed.
    fn read_device(&mut self, op: &Op, src: DeviceAddr, bytes: usize) -> Vec<u8> {
        match self.memory[src.device].bytes(src.addr, bytes) {
            Some(data) => data.to_vec(),
            None => {
                self.use_after_free(
                    op,
                    MemRange::Device {
                        addr: src,
                        len: bytes,
                    },
                    false,
                );
                poison(bytes)
            }
        }
    }

    fn write_device(&mut self, op: &Op, dst: DeviceAddr, data: &[u8]) {
        match self.memory[dst.device].bytes_mut(dst.addr, data.len()) {
            Some(target) => target.copy_from_slice(data),
            None => self.use_after_free(
                op,
                MemRange::Device {
                    addr: dst,
                    len: data.len(),
                },
                true,
            ),
        }
    }

    /// Whether the caller's host memory at `addr` may be touched; reports freed pinned memory.
    fn host_usable(&mut self, op: &Op, addr: usize, bytes: usize, write: bool) -> bool {
        if op.host_detached {
            return false;
        }
        if self.pinned.classify(addr) == HostKind::FreedPinned {
            self.use_after_free(op, MemRange::Host { addr, len: bytes }, write);
            return false;
        }
        true
    }

    /// Moves the bytes of a copy or memset, at execution time.
    fn carry_out(&mut self, op: &Op) {
        match op.work {
            Work::Peer {
                dst,
                src,
                bytes,
                fault,
                ..
            } => {
                let mut in_flight = self.read_device(op, src, bytes);
                let delivered = damage(fault, &mut in_flight);
                if delivered == bytes {
                    self.write_device(op, dst, &in_flight);
                } else {
                    self.write_device(op, dst, &in_flight[..delivered]);
                }
            }
            Work::DtoH {
                dst, src, bytes, ..
            } => {
                let data = self.read_device(op, src, bytes);
                if self.host_usable(op, dst, bytes, true) {
                    // SAFETY: the caller of `copy_dtoh_async` promised that `dst`
                    // is valid for `bytes` writes until the copy is done, and it
                    // is running now; memory whose owner took it back (a
                    // released borrow, a free) was detached above.
                    unsafe { copy_to_host(dst as *mut u8, &data) };
                }
            }
            Work::HtoD {
                dst, src, bytes, ..
            } => {
                let data = if self.host_usable(op, src, bytes, false) {
                    let mut data = vec![0u8; bytes];
                    // SAFETY: the caller of `copy_htod_async` promised that `src`
                    // is valid for `bytes` reads until the copy is done, and it
                    // is running now; detached memory is not read.
                    unsafe { copy_from_host(&mut data, src as *const u8) };
                    data
                } else {
                    poison(bytes)
                };
                self.write_device(op, dst, &data);
            }
            Work::Memset {
                dst, value, bytes, ..
            } => self.write_device(op, dst, &vec![value; bytes]),
            Work::Record { .. } | Work::Wait { .. } => {}
        }
    }
}
