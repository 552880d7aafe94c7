//! Queuing work: each call checks its arguments as CUDA would, fixes the path, fault and duration, and appends an operation to its stream.

use super::fault::Fault;
use super::machine::Machine;
use super::ops::{Op, Work};
use super::timeline::{
    duration_ns, HOST_LAUNCH_NS, LOCAL_GBPS, LOCAL_LAUNCH_NS, PEER_LAUNCH_NS,
    UNGRANTED_POOL_SLOWDOWN,
};
use super::{invalid_handle, invalid_value};
use crate::{AllocKind, DeviceAddr, EventId, Result, StreamId};

impl Machine {
    /// Checks the devices and that `stream` is a live stream.
    fn check_queue(&self, devices: &[usize], stream: StreamId, call: &'static str) -> Result<()> {
        for &device in devices {
            self.check(device)?;
        }
        self.check(stream.device)?;
        self.streams
            .live(stream)
            .map(drop)
            .ok_or_else(|| invalid_handle(call))
    }

    fn check_range(&self, ptr: DeviceAddr, bytes: usize, call: &'static str) -> Result<()> {
        if self.memory[ptr.device].contains(ptr.addr, bytes) {
            Ok(())
        } else {
            Err(invalid_value(call))
        }
    }

    /// Whether `ptr` is stream-ordered pool memory that device `other` has no grant for.
    fn ungranted_pool_memory(&self, ptr: DeviceAddr, other: usize) -> bool {
        self.memory[ptr.device].kind_of(ptr.addr) == Some(AllocKind::Pool)
            && !self.pool_grants.contains(&(ptr.device, other))
    }

    /// Appends `work` to `stream` (checked live by the caller). Queuing
    /// releases: the operation carries the calling thread's clock.
    fn enqueue(&mut self, stream: StreamId, work: Work) {
        let call_number = self.calls.number;
        let queued_at_ns = self.host_ns;
        let thread = self.agents.current_thread();
        let clock = thread.clock.clone();
        thread.clock.tick(thread.agent);
        let queued_by = thread.agent;
        if let Some(state) = self.streams.live_mut(stream) {
            state.queue.push_back(Op {
                work,
                queued_at_ns,
                clock,
                queued_by,
                call_number,
                host_detached: false,
            });
        }
    }

    pub(super) fn copy_peer(
        &mut self,
        dst: DeviceAddr,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        const CALL: &str = "cuMemcpyPeerAsync";
        self.check_queue(&[dst.device, src.device], stream, CALL)?;
        self.check_range(src, bytes, CALL)?;
        self.check_range(dst, bytes, CALL)?;
        let (a, b) = (src.device, dst.device);
        *self.counters.peer_copies.entry((a, b)).or_default() += 1;
        if bytes == 0 {
            return Ok(());
        }
        let (ns, fault) = if a == b {
            (duration_ns(bytes, LOCAL_GBPS, LOCAL_LAUNCH_NS), Fault::None)
        } else if self.peer_enabled.contains(&(a, b)) || self.peer_enabled.contains(&(b, a)) {
            *self.counters.peer_path_copies.entry((a, b)).or_default() += 1;
            let pair = self.pairs[a][b];
            let mut gbps = pair.gbps;
            if self.ungranted_pool_memory(src, b) || self.ungranted_pool_memory(dst, a) {
                gbps /= UNGRANTED_POOL_SLOWDOWN;
            }
            (duration_ns(bytes, gbps, PEER_LAUNCH_NS), pair.fault)
        } else {
            // The driver stages the copy through host memory itself.
            let gbps = self.host_gbps[a].min(self.host_gbps[b]) / 2.0;
            (duration_ns(bytes, gbps, PEER_LAUNCH_NS), Fault::None)
        };
        self.enqueue(
            stream,
            Work::Peer {
                dst,
                src,
                bytes,
                fault,
                ns,
            },
        );
        Ok(())
    }

    /// A device-to-host copy into the caller's memory at `dst` (non-null when `bytes > 0`).
    pub(super) fn copy_dtoh(
        &mut self,
        dst: usize,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        const CALL: &str = "cuMemcpyDtoHAsync";
        self.check_queue(&[src.device], stream, CALL)?;
        self.check_range(src, bytes, CALL)?;
        self.counters.host_copies += 1;
        if bytes > 0 {
            let ns = duration_ns(bytes, self.host_gbps[src.device], HOST_LAUNCH_NS);
            self.enqueue(
                stream,
                Work::DtoH {
                    dst,
                    src,
                    bytes,
                    ns,
                },
            );
        }
        Ok(())
    }

    /// A host-to-device copy from the caller's memory at `src` (non-null when `bytes > 0`).
    pub(super) fn copy_htod(
        &mut self,
        dst: DeviceAddr,
        src: usize,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        const CALL: &str = "cuMemcpyHtoDAsync";
        self.check_queue(&[dst.device], stream, CALL)?;
        self.check_range(dst, bytes, CALL)?;
        self.counters.host_copies += 1;
        if bytes > 0 {
            let ns = duration_ns(bytes, self.host_gbps[dst.device], HOST_LAUNCH_NS);
            self.enqueue(
                stream,
                Work::HtoD {
                    dst,
                    src,
                    bytes,
                    ns,
                },
            );
        }
        Ok(())
    }

    pub(super) fn memset(
        &mut self,
        dst: DeviceAddr,
        value: u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        const CALL: &str = "cuMemsetD8Async";
        self.check_queue(&[dst.device], stream, CALL)?;
        self.check_range(dst, bytes, CALL)?;
        if bytes > 0 {
            let ns = duration_ns(bytes, LOCAL_GBPS, LOCAL_LAUNCH_NS);
            self.enqueue(
                stream,
                Work::Memset {
                    dst,
                    value,
                    bytes,
                    ns,
                },
            );
        }
        Ok(())
    }

    /// A new version of `event`, complete once everything queued on `stream` before it has run.
    pub(super) fn record_event(&mut self, event: EventId, stream: StreamId) -> Result<()> {
        const CALL: &str = "cuEventRecord";
        self.check(event.device)?;
        self.check(stream.device)?;
        if !self.events.exists(event) || self.streams.live(stream).is_none() {
            return Err(invalid_handle(CALL));
        }
        if event.device != stream.device {
            // CUDA rejects an event and a stream of different contexts.
            return Err(invalid_handle(CALL));
        }
        let version = self
            .events
            .record(event, stream)
            .ok_or_else(|| invalid_handle(CALL))?;
        self.enqueue(stream, Work::Record { event, version });
        Ok(())
    }

    /// Later work on `stream` waits for the version of `event` current now.
    pub(super) fn stream_wait_event(&mut self, stream: StreamId, event: EventId) -> Result<()> {
        const CALL: &str = "cuStreamWaitEvent";
        self.check(stream.device)?;
        self.check(event.device)?;
        let version = self
            .events
            .current(event)
            .ok_or_else(|| invalid_handle(CALL))?;
        if self.streams.live(stream).is_none() {
            return Err(invalid_handle(CALL));
        }
        if version > 0 {
            self.events.add_waiter(event, version);
            self.enqueue(stream, Work::Wait { event, version });
        }
        Ok(())
    }
}
