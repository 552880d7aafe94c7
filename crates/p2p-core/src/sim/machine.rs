//! The simulated machine's state and every operation on it; `SimDriver` holds it behind one lock.

use std::collections::{HashMap, HashSet};

use super::device_memory::DeviceMemory;
use super::fault::{damage, Fault};
use super::host_memory::HostBlock;
use super::timeline::{
    duration_ns, Timeline, HOST_LAUNCH_NS, LOCAL_GBPS, LOCAL_LAUNCH_NS, PEER_LAUNCH_NS,
    UNGRANTED_POOL_SLOWDOWN,
};
use super::topology::{Topology, DEFAULT_PEER_GBPS};
use super::{cuda_error, invalid_value, SimStats};
use crate::{AllocKind, DeviceAddr, Error, EventId, PeerClaim, PoolId, Result, StreamId};

/// `cuMemPool`'s raw number for each device's one pool.
pub(super) const DEFAULT_POOL_RAW: u64 = 1;

/// One direction of a peer path, as the machine has it now.
#[derive(Clone, Copy, Debug)]
struct Pair {
    claimed: bool,
    gbps: f64,
    fault: Fault,
}

#[derive(Debug)]
pub(super) struct Machine {
    host_gbps: Vec<f64>,
    /// `pairs[from][to]`; pairs the topology does not list are unclaimed.
    pairs: Vec<Vec<Pair>>,
    memory: Vec<DeviceMemory>,
    timeline: Timeline,
    /// `(accessor, owner)` pairs that `enable_peer_access` has let through.
    peer_enabled: HashSet<(usize, usize)>,
    /// `(pool's device, accessor)` pairs that `grant_pool_access` has recorded.
    pool_grants: HashSet<(usize, usize)>,
    /// Live pinned allocations by address.
    pinned: HashMap<usize, HostBlock>,
    /// Counters; the `live_*` fields are filled in by `stats`.
    counters: SimStats,
}

impl Machine {
    pub(super) fn new(topology: &Topology) -> Machine {
        let count = topology.gpus.len();
        let mut pairs = vec![
            vec![
                Pair {
                    claimed: false,
                    gbps: DEFAULT_PEER_GBPS,
                    fault: Fault::None,
                };
                count
            ];
            count
        ];
        for peer in &topology.peers {
            // A parsed topology names only GPUs it has; one built by hand might not.
            if let Some(slot) = pairs
                .get_mut(peer.from)
                .and_then(|row| row.get_mut(peer.to))
            {
                *slot = Pair {
                    claimed: peer.claimed,
                    gbps: peer.gbps,
                    fault: peer.fault,
                };
            }
        }
        Machine {
            host_gbps: topology.gpus.iter().map(|gpu| gpu.host_gbps).collect(),
            pairs,
            memory: topology
                .gpus
                .iter()
                .enumerate()
                .map(|(ordinal, gpu)| {
                    DeviceMemory::new(ordinal, gpu.memory_mib.saturating_mul(1 << 20))
                })
                .collect(),
            timeline: Timeline::new(count),
            peer_enabled: HashSet::new(),
            pool_grants: HashSet::new(),
            pinned: HashMap::new(),
            counters: SimStats::default(),
        }
    }

    fn check(&self, ordinal: usize) -> Result<()> {
        let count = self.memory.len();
        if ordinal < count {
            Ok(())
        } else {
            Err(Error::InvalidDevice { ordinal, count })
        }
    }

    pub(super) fn claim(&self, from: usize, to: usize) -> Result<PeerClaim> {
        self.check(from)?;
        self.check(to)?;
        let same = from == to;
        let claimed = same || self.pairs[from][to].claimed;
        Ok(PeerClaim {
            from,
            to,
            can_access_peer: claimed,
            access_supported: claimed,
            performance_rank: 0,
            native_atomics: same,
        })
    }

    pub(super) fn set_fault(&mut self, from: usize, to: usize, fault: Fault) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.pairs[from][to].fault = fault;
        Ok(())
    }

    pub(super) fn enable_peer_access(&mut self, accessor: usize, owner: usize) -> Result<()> {
        self.check(accessor)?;
        self.check(owner)?;
        self.counters.enable_calls += 1;
        if accessor == owner {
            // A device always reaches its own memory; nothing to enable.
            return Ok(());
        }
        let pair = self.pairs[accessor][owner];
        if !pair.claimed || pair.fault == Fault::EnableFails {
            return Err(cuda_error(
                "cuCtxEnablePeerAccess",
                217,
                "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED",
            ));
        }
        self.peer_enabled.insert((accessor, owner));
        Ok(())
    }

    pub(super) fn disable_peer_access(&mut self, accessor: usize, owner: usize) -> Result<()> {
        self.check(accessor)?;
        self.check(owner)?;
        self.peer_enabled.remove(&(accessor, owner));
        Ok(())
    }

    pub(super) fn alloc_device(
        &mut self,
        device: usize,
        bytes: usize,
        kind: AllocKind,
    ) -> Result<DeviceAddr> {
        self.check(device)?;
        let addr = self.memory[device].alloc(bytes, kind)?;
        Ok(DeviceAddr { device, addr })
    }

    pub(super) fn free_device(&mut self, ptr: DeviceAddr) -> Result<()> {
        self.check(ptr.device)?;
        self.memory[ptr.device]
            .free(ptr.addr)
            .ok_or_else(|| invalid_value("cuMemFree"))
    }

    pub(super) fn alloc_pinned(&mut self, bytes: usize) -> Result<*mut u8> {
        let block = HostBlock::zeroed(bytes).ok_or_else(|| Error::OutOfMemory {
            place: "pinned host memory".to_string(),
            bytes,
        })?;
        let ptr = block.as_mut_ptr();
        self.pinned.insert(ptr as usize, block);
        self.counters.pinned_bytes_allocated_total += bytes as u64;
        Ok(ptr)
    }

    pub(super) fn free_pinned(&mut self, ptr: *mut u8) -> Result<()> {
        self.pinned
            .remove(&(ptr as usize))
            .map(drop)
            .ok_or_else(|| invalid_value("cuMemFreeHost"))
    }

    pub(super) fn pool_of(&self, ptr: DeviceAddr) -> Result<Option<PoolId>> {
        self.check(ptr.device)?;
        match self.memory[ptr.device].kind_of(ptr.addr) {
            None => Err(invalid_value("cuPointerGetAttribute")),
            Some(AllocKind::Plain) => Ok(None),
            Some(AllocKind::Pool) => Ok(Some(PoolId {
                device: ptr.device,
                raw: DEFAULT_POOL_RAW,
            })),
        }
    }

    pub(super) fn grant_pool_access(&mut self, pool: PoolId, accessor: usize) -> Result<()> {
        self.check(pool.device)?;
        self.check(accessor)?;
        if pool.raw != DEFAULT_POOL_RAW {
            return Err(invalid_value("cuMemPoolSetAccess"));
        }
        if accessor != pool.device {
            self.pool_grants.insert((pool.device, accessor));
        }
        Ok(())
    }

    pub(super) fn create_stream(&mut self, device: usize) -> Result<StreamId> {
        self.check(device)?;
        Ok(self.timeline.create_stream(device))
    }

    pub(super) fn destroy_stream(&mut self, stream: StreamId) -> Result<()> {
        self.check(stream.device)?;
        self.timeline.destroy_stream(stream)
    }

    pub(super) fn create_event(&mut self, device: usize, timing: bool) -> Result<EventId> {
        self.check(device)?;
        Ok(self.timeline.create_event(device, timing))
    }

    pub(super) fn destroy_event(&mut self, event: EventId) -> Result<()> {
        self.check(event.device)?;
        self.timeline.destroy_event(event)
    }

    /// Checks the devices and the stream of queued work (a hung stream is
    /// fine here: the work is accepted and never carried out).
    fn check_queue(&self, devices: &[usize], stream: StreamId, call: &'static str) -> Result<()> {
        for &device in devices {
            self.check(device)?;
        }
        self.check(stream.device)?;
        self.timeline.stream(stream, call).map(drop)
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

        let (duration, fault) = if a == b {
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

        if fault == Fault::Hang {
            self.timeline.hang(stream);
            return Ok(());
        }
        if !self.timeline.run(stream, duration) {
            return Ok(());
        }
        let mut in_flight = self.memory[a]
            .bytes(src.addr, bytes)
            .ok_or_else(|| invalid_value(CALL))?
            .to_vec();
        let delivered = damage(fault, &mut in_flight);
        let target = self.memory[b]
            .bytes_mut(dst.addr, bytes)
            .ok_or_else(|| invalid_value(CALL))?;
        target[..delivered].copy_from_slice(&in_flight[..delivered]);
        Ok(())
    }

    /// A device-to-host copy; `deliver` writes the device bytes to the caller's memory.
    pub(super) fn copy_dtoh(
        &mut self,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
        deliver: impl FnOnce(&[u8]),
    ) -> Result<()> {
        const CALL: &str = "cuMemcpyDtoHAsync";
        self.check_queue(&[src.device], stream, CALL)?;
        self.check_range(src, bytes, CALL)?;
        self.counters.host_copies += 1;
        if bytes == 0
            || !self.timeline.run(
                stream,
                duration_ns(bytes, self.host_gbps[src.device], HOST_LAUNCH_NS),
            )
        {
            return Ok(());
        }
        deliver(
            self.memory[src.device]
                .bytes(src.addr, bytes)
                .ok_or_else(|| invalid_value(CALL))?,
        );
        Ok(())
    }

    /// A host-to-device copy; `fetch` fills the device bytes from the caller's memory.
    pub(super) fn copy_htod(
        &mut self,
        dst: DeviceAddr,
        bytes: usize,
        stream: StreamId,
        fetch: impl FnOnce(&mut [u8]),
    ) -> Result<()> {
        const CALL: &str = "cuMemcpyHtoDAsync";
        self.check_queue(&[dst.device], stream, CALL)?;
        self.check_range(dst, bytes, CALL)?;
        self.counters.host_copies += 1;
        if bytes == 0
            || !self.timeline.run(
                stream,
                duration_ns(bytes, self.host_gbps[dst.device], HOST_LAUNCH_NS),
            )
        {
            return Ok(());
        }
        fetch(
            self.memory[dst.device]
                .bytes_mut(dst.addr, bytes)
                .ok_or_else(|| invalid_value(CALL))?,
        );
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
        if bytes == 0
            || !self
                .timeline
                .run(stream, duration_ns(bytes, LOCAL_GBPS, LOCAL_LAUNCH_NS))
        {
            return Ok(());
        }
        self.memory[dst.device]
            .bytes_mut(dst.addr, bytes)
            .ok_or_else(|| invalid_value(CALL))?
            .fill(value);
        Ok(())
    }

    pub(super) fn record_event(&mut self, event: EventId, stream: StreamId) -> Result<()> {
        self.check(event.device)?;
        self.check(stream.device)?;
        self.timeline.record(event, stream)
    }

    pub(super) fn stream_wait_event(&mut self, stream: StreamId, event: EventId) -> Result<()> {
        self.check(stream.device)?;
        self.check(event.device)?;
        self.timeline.wait(stream, event)
    }

    pub(super) fn event_done(&mut self, event: EventId) -> Result<bool> {
        self.check(event.device)?;
        self.timeline.event_done(event)
    }

    pub(super) fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        self.check(start.device)?;
        self.check(end.device)?;
        self.timeline.elapsed_ms(start, end)
    }

    pub(super) fn synchronize_stream(&mut self, stream: StreamId) -> Result<()> {
        self.check(stream.device)?;
        self.timeline.synchronize(stream)
    }

    pub(super) fn stats(&self) -> SimStats {
        let mut stats = self.counters.clone();
        stats.live_pinned_allocations = self.pinned.len();
        stats.live_device_allocations =
            self.memory.iter().map(DeviceMemory::live_allocations).sum();
        stats
    }
}
