//! The simulated machine's state, and the calls that configure it: peers, memory, pools, streams and events.
//!
//! Queuing work is in `enqueue`, running it in `exec`, what the host
//! observes in `observe`; `SimDriver` holds a `Machine` behind one lock.

use std::collections::HashSet;
use std::sync::Arc;

use super::device_memory::DeviceMemory;
use super::events::Events;
use super::fault::Fault;
use super::host_memory::PinnedMemory;
use super::ops::{StreamState, Streams};
use super::options::{Execution, SimOptions};
use super::race::{Agents, History, Space, VClock};
use super::report::{AccessKind, Actor, ReportKind, Reports, SimReport};
use super::scheduler::{Scheduler, SplitMix64};
use super::topology::{Topology, DEFAULT_PEER_GBPS};
use super::{cuda_error, invalid_handle, invalid_value, SimStats};
use crate::{AllocKind, DeviceAddr, Error, EventId, MemRange, PeerClaim, PoolId, Result, StreamId};

/// `cuMemPool`'s raw number for each device's one pool.
pub(super) const DEFAULT_POOL_RAW: u64 = 1;

/// One direction of a peer path, as the machine has it now.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pair {
    pub(super) claimed: bool,
    pub(super) gbps: f64,
    pub(super) fault: Fault,
}

#[derive(Debug)]
pub(super) struct Machine {
    pub(super) host_gbps: Vec<f64>,
    /// `pairs[from][to]`; pairs the topology does not list are unclaimed.
    pub(super) pairs: Vec<Vec<Pair>>,
    pub(super) memory: Vec<DeviceMemory>,
    /// `(accessor, owner)` pairs that `enable_peer_access` has let through.
    pub(super) peer_enabled: HashSet<(usize, usize)>,
    /// `(pool's device, accessor)` pairs that `grant_pool_access` has recorded.
    pub(super) pool_grants: HashSet<(usize, usize)>,
    pub(super) pinned: PinnedMemory,
    /// Counters; the `live_*` fields are filled in by `stats`.
    pub(super) counters: SimStats,
    /// The host's virtual "now", in nanoseconds.
    pub(super) host_ns: u64,
    pub(super) streams: Streams,
    pub(super) events: Events,
    pub(super) agents: Agents,
    pub(super) history: History,
    pub(super) reports: Reports,
    pub(super) scheduler: Scheduler,
    /// Garbage for fresh allocations (apart from the scheduler's choices, so
    /// that allocating does not shift the schedule).
    garbage: SplitMix64,
    pub(super) execution: Execution,
    pub(super) calls: super::calls::Calls,
    pub(super) seed: u64,
}

impl Machine {
    pub(super) fn new(topology: &Topology, options: &SimOptions) -> Machine {
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
        let mut machine = Machine {
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
            peer_enabled: HashSet::new(),
            pool_grants: HashSet::new(),
            pinned: PinnedMemory::default(),
            counters: SimStats::default(),
            host_ns: 0,
            streams: Streams {
                next_raw: 1,
                ..Streams::default()
            },
            events: Events::new(),
            agents: Agents::new(options.shared_host_clock),
            history: History::default(),
            reports: Reports::default(),
            scheduler: Scheduler::new(options.seed),
            garbage: SplitMix64::new(options.seed ^ 0x6a09_e667_f3bc_c908),
            execution: options.execution,
            calls: Default::default(),
            seed: options.seed,
        };
        for device in 0..count {
            machine.add_stream(StreamId { device, raw: 0 });
        }
        machine
    }

    pub(super) fn check(&self, ordinal: usize) -> Result<()> {
        let count = self.memory.len();
        if ordinal < count {
            Ok(())
        } else {
            Err(crate::InvalidDevice {
                side: None,
                ordinal,
                count,
            }
            .into())
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
        let garbage = self.garbage.next_u64();
        let addr = self.memory[device].alloc(bytes, kind, garbage)?;
        Ok(DeviceAddr { device, addr })
    }

    pub(super) fn free_device(&mut self, ptr: DeviceAddr) -> Result<()> {
        self.check(ptr.device)?;
        let (base, len) = self.memory[ptr.device]
            .allocation_at(ptr.addr)
            .ok_or_else(|| invalid_value("cuMemFree"))?;
        let range = MemRange::Device {
            addr: DeviceAddr {
                device: ptr.device,
                addr: base,
            },
            len,
        };
        self.host_takes_back(
            &range,
            format!("cuMemFree of {len} bytes"),
            ReportKind::FreeWhileInUse,
        );
        self.memory[ptr.device]
            .free(ptr.addr)
            .map(drop)
            .ok_or_else(|| invalid_value("cuMemFree"))
    }

    pub(super) fn alloc_pinned(&mut self, bytes: usize) -> Result<*mut u8> {
        let garbage = self.garbage.next_u64();
        let ptr = self
            .pinned
            .alloc(bytes, garbage)
            .ok_or_else(|| Error::OutOfMemory {
                place: "pinned host memory".to_string(),
                bytes,
            })?;
        self.counters.pinned_bytes_allocated_total += bytes as u64;
        Ok(ptr)
    }

    pub(super) fn free_pinned(&mut self, ptr: *mut u8) -> Result<()> {
        if self.pinned.classify(ptr as usize) != super::host_memory::HostKind::Pinned {
            return Err(invalid_value("cuMemFreeHost"));
        }
        // Look the length up first, so that the checks cover the whole block.
        let len = self
            .pinned
            .len_at(ptr as usize)
            .ok_or_else(|| invalid_value("cuMemFreeHost"))?;
        let range = MemRange::Host {
            addr: ptr as usize,
            len,
        };
        self.host_takes_back(
            &range,
            format!("cuMemFreeHost of {len} bytes"),
            ReportKind::FreeWhileInUse,
        );
        self.pinned
            .free(ptr)
            .map(drop)
            .ok_or_else(|| invalid_value("cuMemFreeHost"))
    }

    /// The host takes `range` back (a free, or a safe API returning): every
    /// queued operation that still touches it is reported (and loses its
    /// host memory, so that it can never touch memory the caller reuses),
    /// and so is every access that ran without the host waiting for it.
    pub(super) fn host_takes_back(&mut self, range: &MemRange, what: String, kind: ReportKind) {
        let call_number = self.calls.number;
        let thread = self.agents.current_thread();
        let (thread_agent, thread_clock) = (thread.agent, thread.clock.clone());
        let host = Arc::new(Actor {
            what,
            access: AccessKind::Write,
            on: self.agents.name(thread_agent).to_string(),
            called_by: self.agents.name(thread_agent).to_string(),
            call_number,
        });
        let is_host = matches!(range, MemRange::Host { .. });
        let mut found = Vec::new();
        for (&id, stream) in self.streams.map.iter_mut() {
            for op in stream.queue.iter_mut() {
                if let Some(touch) = op.work.touches().iter().find(|t| t.overlaps(range)) {
                    found.push((
                        id,
                        stream.agent,
                        op.work.describe(),
                        touch.write,
                        op.queued_by,
                        op.call_number,
                    ));
                    if is_host {
                        op.host_detached = true;
                    }
                }
            }
        }
        for (_, agent, what, write, queued_by, op_call) in found {
            let first = Actor {
                what,
                access: if write {
                    AccessKind::Write
                } else {
                    AccessKind::Read
                },
                on: self.agents.name(agent).to_string(),
                called_by: self.agents.name(queued_by).to_string(),
                call_number: op_call,
            };
            self.reports.push(SimReport {
                kind,
                range: *range,
                first,
                second: Some((*host).clone()),
            });
        }
        let (space, start, len) = super::ops::range_parts(range);
        let checks_history = is_host || kind == ReportKind::FreeWhileInUse;
        if !checks_history {
            return;
        }
        let spaces = if is_host {
            vec![space, Space::Pageable(thread_agent)]
        } else {
            vec![space]
        };
        for space in spaces {
            let access = super::race::Access {
                space,
                start,
                len,
                write: true,
                agent: thread_agent,
                epoch: thread_clock.get(thread_agent),
                clock: &thread_clock,
                actor: host.clone(),
            };
            for conflict in self.history.access(&access, false) {
                self.reports.push(SimReport {
                    kind,
                    range: super::ops::to_range(
                        space,
                        conflict.start,
                        conflict.end - conflict.start,
                    ),
                    first: (*conflict.earlier).clone(),
                    second: Some((*host).clone()),
                });
            }
            self.history.forget(space, start, len);
        }
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

    fn add_stream(&mut self, id: StreamId) {
        let agent = self
            .agents
            .new_agent(format!("stream cuda:{}#{}", id.device, id.raw));
        self.streams.map.insert(
            id,
            StreamState {
                agent,
                queue: Default::default(),
                clock_ns: self.host_ns,
                vclock: VClock::default(),
                destroyed: false,
            },
        );
    }

    pub(super) fn create_stream(&mut self, device: usize) -> Result<StreamId> {
        self.check(device)?;
        let id = StreamId {
            device,
            raw: self.streams.next_raw,
        };
        self.streams.next_raw += 1;
        self.add_stream(id);
        Ok(id)
    }

    /// Destroys the handle; work already queued still runs (as in CUDA).
    pub(super) fn destroy_stream(&mut self, stream: StreamId) -> Result<()> {
        self.check(stream.device)?;
        let state = match self.streams.live_mut(stream) {
            Some(state) if stream.raw != 0 => state,
            _ => return Err(invalid_handle("cuStreamDestroy")),
        };
        state.destroyed = true;
        if state.queue.is_empty() {
            self.streams.map.remove(&stream);
        }
        Ok(())
    }

    pub(super) fn create_event(&mut self, device: usize, timing: bool) -> Result<EventId> {
        self.check(device)?;
        let id = EventId {
            device,
            raw: self.events.next_raw,
        };
        self.events.next_raw += 1;
        self.events.create(id, timing);
        Ok(id)
    }

    pub(super) fn destroy_event(&mut self, event: EventId) -> Result<()> {
        self.check(event.device)?;
        if self.events.destroy(event) {
            Ok(())
        } else {
            Err(invalid_handle("cuEventDestroy"))
        }
    }

    pub(super) fn stats(&self) -> SimStats {
        let mut stats = self.counters.clone();
        stats.live_pinned_allocations = self.pinned.live_count();
        stats.live_device_allocations =
            self.memory.iter().map(DeviceMemory::live_allocations).sum();
        stats
    }
}
