//! Driver calls as the simulator counts them: their kinds, per-kind counters, and injected failures at the Nth call.

use std::collections::BTreeMap;
use std::fmt;

use super::cuda_error;
use crate::Error;

/// A kind of driver call, for [`SimDriver::fail_call`](super::SimDriver::fail_call)
/// and [`SimDriver::call_counts`](super::SimDriver::call_counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CallKind {
    /// Any driver call below (only for `fail_call`: "the Nth call, whatever it is").
    Any,
    /// `claim`.
    Claim,
    /// `enable_peer_access`.
    EnablePeer,
    /// `disable_peer_access`.
    DisablePeer,
    /// `alloc_device`.
    AllocDevice,
    /// `free_device`.
    FreeDevice,
    /// `alloc_pinned`.
    AllocPinned,
    /// `free_pinned`.
    FreePinned,
    /// `pool_of`, `default_pool`, `grant_pool_access`.
    Pool,
    /// `create_stream`.
    CreateStream,
    /// `destroy_stream`.
    DestroyStream,
    /// `create_event` and `create_timing_event`.
    CreateEvent,
    /// `destroy_event`.
    DestroyEvent,
    /// `copy_peer_async`, `copy_dtoh_async`, `copy_htod_async`, and each batch
    /// call (`copy_batch_async`, `copy_batch_dtoh_async`, `copy_batch_htod_async`) once.
    Copy,
    /// `memset_async`.
    Memset,
    /// `record_event`.
    Record,
    /// `stream_wait_event`.
    Wait,
    /// `event_done` and `stream_done`.
    Query,
    /// `event_elapsed_ms`.
    Elapsed,
    /// `synchronize_stream`.
    Synchronize,
    /// `wait_event` and `wait_stream` (host waits with a deadline).
    HostWait,
}

impl CallKind {
    /// Every kind except [`CallKind::Any`].
    pub const ALL: [CallKind; 20] = [
        CallKind::Claim,
        CallKind::EnablePeer,
        CallKind::DisablePeer,
        CallKind::AllocDevice,
        CallKind::FreeDevice,
        CallKind::AllocPinned,
        CallKind::FreePinned,
        CallKind::Pool,
        CallKind::CreateStream,
        CallKind::DestroyStream,
        CallKind::CreateEvent,
        CallKind::DestroyEvent,
        CallKind::Copy,
        CallKind::Memset,
        CallKind::Record,
        CallKind::Wait,
        CallKind::Query,
        CallKind::Elapsed,
        CallKind::Synchronize,
        CallKind::HostWait,
    ];
}

impl fmt::Display for CallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How many driver calls of each kind a simulated machine has seen (failed ones included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    counts: BTreeMap<CallKind, u64>,
}

impl CallCounts {
    /// Calls of `kind` so far; [`CallKind::Any`] gives the total.
    pub fn of(&self, kind: CallKind) -> u64 {
        if kind == CallKind::Any {
            self.total()
        } else {
            self.counts.get(&kind).copied().unwrap_or(0)
        }
    }

    /// All calls so far.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The calls made since `earlier` (a snapshot of the same machine), per kind.
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        let counts = self
            .counts
            .iter()
            .map(|(&kind, &n)| (kind, n.saturating_sub(earlier.of(kind))))
            .filter(|&(_, n)| n > 0)
            .collect();
        CallCounts { counts }
    }
}

/// Counters, the failures still to inject, and the "not yet" answers still to give.
#[derive(Debug, Default)]
pub(super) struct Calls {
    counts: CallCounts,
    /// `(kind, calls of that kind still to go before the one that fails)`.
    planned_failures: Vec<(CallKind, u64)>,
    /// Completion queries still to answer "not yet".
    pub(super) slow_queries: u64,
    /// Number of the current call, from 1, over all kinds.
    pub(super) number: u64,
}

impl Calls {
    pub(super) fn plan_failure(&mut self, kind: CallKind, nth: u64) {
        if nth > 0 {
            self.planned_failures.push((kind, nth));
        }
    }

    pub(super) fn counts(&self) -> CallCounts {
        self.counts.clone()
    }

    /// Counts a call of `kind` and says whether an injected failure hits it.
    pub(super) fn enter(&mut self, kind: CallKind) -> bool {
        self.number += 1;
        *self.counts.counts.entry(kind).or_default() += 1;
        let mut fails = false;
        self.planned_failures.retain_mut(|(planned, left)| {
            if *planned != kind && *planned != CallKind::Any {
                return true;
            }
            *left -= 1;
            if *left == 0 {
                fails = true;
                return false;
            }
            true
        });
        fails
    }
}

/// The error an injected failure gives: what the CUDA call would return for
/// a failure it cannot explain (allocations: out of memory).
pub(super) fn injected_error(kind: CallKind, call: &'static str, bytes: usize) -> Error {
    match kind {
        CallKind::AllocDevice | CallKind::AllocPinned => Error::OutOfMemory {
            place: format!("{call} (failure injected by the simulator)"),
            bytes,
        },
        _ => cuda_error(call, 999, "CUDA_ERROR_UNKNOWN"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nth_call_of_a_kind_fails_once() {
        let mut calls = Calls::default();
        calls.plan_failure(CallKind::Copy, 2);
        calls.plan_failure(CallKind::Any, 4);
        calls.plan_failure(CallKind::Record, 0);
        let fails: Vec<bool> = [
            CallKind::Copy,
            CallKind::Record,
            CallKind::Copy,
            CallKind::Record,
            CallKind::Copy,
        ]
        .into_iter()
        .map(|kind| calls.enter(kind))
        .collect();
        assert_eq!(fails, [false, false, true, true, false]);
        assert_eq!(calls.counts().of(CallKind::Copy), 3);
        assert_eq!(calls.counts().of(CallKind::Any), 5);
        let before = calls.counts();
        calls.enter(CallKind::Query);
        assert_eq!(calls.counts().since(&before).total(), 1);
    }
}
