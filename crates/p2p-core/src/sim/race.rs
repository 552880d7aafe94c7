//! The happens-before race detector: vector clocks over host threads and streams, and the history of accesses to each byte range.
//!
//! Every host thread and every stream is an *agent* with a vector clock.
//! Queuing an operation or recording an event releases (the operation
//! carries a snapshot of the queuing thread's clock); running it acquires
//! that snapshot on its stream. A stream wait acquires the clock of the event
//! version it waits for; a host wait, a true query or a synchronize acquires
//! the clock of what it waited for. An access A happens before an access B
//! iff B's agent clock has seen A's epoch; two accesses to overlapping bytes,
//! one of them a write, that are not ordered either way, are a race.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::ThreadId;

use super::report::Actor;

/// A vector clock: entry `a` is the last epoch of agent `a` this agent has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct VClock(Vec<u32>);

impl VClock {
    pub(super) fn get(&self, agent: usize) -> u32 {
        self.0.get(agent).copied().unwrap_or(0)
    }

    pub(super) fn join(&mut self, other: &VClock) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (mine, &theirs) in self.0.iter_mut().zip(&other.0) {
            *mine = (*mine).max(theirs);
        }
    }

    /// Starts a new epoch of `agent` and returns it.
    pub(super) fn tick(&mut self, agent: usize) -> u32 {
        if self.0.len() <= agent {
            self.0.resize(agent + 1, 0);
        }
        self.0[agent] += 1;
        self.0[agent]
    }
}

/// One host thread as the detector sees it.
#[derive(Debug)]
pub(super) struct HostThread {
    pub(super) agent: usize,
    pub(super) clock: VClock,
}

/// Agents and their names, host threads' clocks (streams keep their own).
#[derive(Debug, Default)]
pub(super) struct Agents {
    names: Vec<String>,
    threads: HashMap<Option<ThreadId>, HostThread>,
    /// All host threads count as one (`SimOptions::shared_host_clock`).
    pub(super) shared_host: bool,
}

impl Agents {
    pub(super) fn new(shared_host: bool) -> Agents {
        Agents {
            shared_host,
            ..Agents::default()
        }
    }

    pub(super) fn new_agent(&mut self, name: String) -> usize {
        self.names.push(name);
        self.names.len() - 1
    }

    pub(super) fn name(&self, agent: usize) -> &str {
        self.names.get(agent).map_or("?", String::as_str)
    }

    /// The calling host thread (made an agent on first use).
    pub(super) fn current_thread(&mut self) -> &mut HostThread {
        let shared = self.shared_host;
        let key = (!shared).then(|| std::thread::current().id());
        let names = &mut self.names;
        self.threads.entry(key).or_insert_with(|| {
            let name = if shared {
                "host".to_string()
            } else {
                let thread = std::thread::current();
                match thread.name() {
                    Some(name) => format!("host thread {name}"),
                    None => format!("host thread {:?}", thread.id()),
                }
            };
            names.push(name);
            let agent = names.len() - 1;
            let mut clock = VClock::default();
            clock.tick(agent);
            HostThread { agent, clock }
        })
    }
}

/// Which memory an address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Space {
    Device(usize),
    /// Pinned host memory (the simulator sees it allocated and freed).
    Host,
    /// Pageable host memory, as used by work that this host thread (agent)
    /// queued. The simulator cannot see the caller's allocator: a address
    /// one thread freed may be another thread's buffer a moment later, so
    /// only accesses queued by the same thread are compared.
    Pageable(usize),
}

#[derive(Clone, Debug)]
struct Record {
    end: u64,
    write: bool,
    agent: usize,
    epoch: u32,
    actor: Arc<Actor>,
}

/// One access being checked.
#[derive(Debug)]
pub(super) struct Access<'a> {
    pub(super) space: Space,
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) write: bool,
    pub(super) agent: usize,
    pub(super) epoch: u32,
    pub(super) clock: &'a VClock,
    pub(super) actor: Arc<Actor>,
}

/// An earlier access that `Access` races with, and where they overlap.
#[derive(Debug)]
pub(super) struct Conflict {
    pub(super) earlier: Arc<Actor>,
    pub(super) start: u64,
    pub(super) end: u64,
}

#[derive(Debug, Default)]
struct SpaceHistory {
    by_start: BTreeMap<u64, Vec<Record>>,
    /// Longest record ever kept, to bound the scan for overlaps.
    max_len: u64,
}

/// Past accesses per memory space.
#[derive(Debug, Default)]
pub(super) struct History {
    spaces: HashMap<Space, SpaceHistory>,
}

impl History {
    /// Checks `access` against the history; with `keep`, records it and drops
    /// the earlier records it makes redundant (covered by it, ordered before
    /// it, and a read or overwritten by a write: any later access racing
    /// with those races with this one too).
    pub(super) fn access(&mut self, access: &Access<'_>, keep: bool) -> Vec<Conflict> {
        let mut conflicts = Vec::new();
        if access.len == 0 {
            return conflicts;
        }
        let end = access.start.saturating_add(access.len);
        let space = self.spaces.entry(access.space).or_default();
        let from = access.start.saturating_sub(space.max_len);
        let mut emptied = Vec::new();
        for (&start, records) in space.by_start.range_mut(from..end) {
            records.retain(|record| {
                if record.end <= access.start {
                    return true;
                }
                let ordered =
                    record.agent == access.agent || record.epoch <= access.clock.get(record.agent);
                if !ordered && (record.write || access.write) {
                    conflicts.push(Conflict {
                        earlier: record.actor.clone(),
                        start: start.max(access.start),
                        end: record.end.min(end),
                    });
                }
                let covered = start >= access.start && record.end <= end;
                !(keep && covered && ordered && (access.write || !record.write))
            });
            if records.is_empty() {
                emptied.push(start);
            }
        }
        for start in emptied {
            space.by_start.remove(&start);
        }
        if keep {
            space.max_len = space.max_len.max(access.len);
            space
                .by_start
                .entry(access.start)
                .or_default()
                .push(Record {
                    end,
                    write: access.write,
                    agent: access.agent,
                    epoch: access.epoch,
                    actor: access.actor.clone(),
                });
        }
        conflicts
    }

    /// Forgets every record overlapping `[start, start + len)` (memory freed,
    /// or handed back to its owner).
    pub(super) fn forget(&mut self, space: Space, start: u64, len: u64) {
        let Some(history) = self.spaces.get_mut(&space) else {
            return;
        };
        let end = start.saturating_add(len.max(1));
        let from = start.saturating_sub(history.max_len);
        let overlapping: Vec<u64> = history.by_start.range(from..end).map(|(&s, _)| s).collect();
        for s in overlapping {
            if let Some(records) = history.by_start.get_mut(&s) {
                records.retain(|record| record.end <= start);
                if records.is_empty() {
                    history.by_start.remove(&s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::report::AccessKind;

    fn actor(name: &str) -> Arc<Actor> {
        Arc::new(Actor {
            what: name.to_string(),
            access: AccessKind::Write,
            on: "s".into(),
            called_by: "t".into(),
            call_number: 1,
        })
    }

    fn access<'a>(
        clock: &'a VClock,
        agent: usize,
        epoch: u32,
        start: u64,
        write: bool,
    ) -> Access<'a> {
        Access {
            space: Space::Host,
            start,
            len: 100,
            write,
            agent,
            epoch,
            clock,
            actor: actor("op"),
        }
    }

    #[test]
    fn unordered_writes_race_and_ordered_ones_do_not() {
        let mut history = History::default();
        let mut a = VClock::default();
        let e = a.tick(0);
        assert!(history.access(&access(&a, 0, e, 0, true), true).is_empty());
        let mut b = VClock::default();
        let f = b.tick(1);
        let conflicts = history.access(&access(&b, 1, f, 50, false), true);
        assert_eq!(conflicts.len(), 1);
        assert_eq!((conflicts[0].start, conflicts[0].end), (50, 100));
        // Once b has seen a's epoch, a later access by b is ordered.
        b.join(&a);
        let g = b.tick(1);
        assert!(history.access(&access(&b, 1, g, 0, true), true).is_empty());
        // Two reads never race; disjoint ranges never race.
        let mut c = VClock::default();
        let h = c.tick(2);
        assert!(history
            .access(&access(&c, 2, h, 500, true), true)
            .is_empty());
        history.forget(Space::Host, 0, 200);
        assert!(history.access(&access(&c, 2, h, 0, true), true).is_empty());
    }
}
