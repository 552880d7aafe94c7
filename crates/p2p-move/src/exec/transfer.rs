//! Handles on queued moves: [`Completion`] (owned) and [`Transfer`] (borrowing).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::Stream;
use p2p_core::Driver;

use super::events::PooledEvent;
use super::{Mover, RawBytes};
use crate::{Error, Plan, Result};

/// What to compare once a move is done (verify mode).
#[derive(Debug)]
pub(crate) struct VerifyRequest {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) src: RawBytes,
    pub(crate) dst: RawBytes,
    pub(crate) len: usize,
}

/// The end of a queued move. Owns no memory: whoever queued the move keeps
/// source and destination alive until [`Completion::is_done`] or
/// [`Completion::wait`] says so. Dropping it does not wait.
#[derive(Debug)]
#[must_use = "a completion says when the memory of a move may be touched again"]
pub struct Completion {
    plan: Plan,
    pub(crate) done: Option<PooledEvent>,
    pub(crate) deadline: Duration,
    verify: Option<VerifyRequest>,
    /// The caller's work the move waits for: the deadline counts from
    /// there, since a long kernel queued before the move is not a hang.
    after: Vec<PooledEvent>,
}

impl Completion {
    pub(crate) fn ready(plan: Plan) -> Completion {
        Completion {
            plan,
            done: None,
            deadline: Duration::ZERO,
            verify: None,
            after: Vec::new(),
        }
    }

    pub(crate) fn queued(
        plan: Plan,
        done: Option<PooledEvent>,
        deadline: Duration,
        verify: Option<VerifyRequest>,
    ) -> Completion {
        Completion {
            plan,
            done,
            deadline,
            verify,
            after: Vec::new(),
        }
    }

    /// Marks the caller's work the move is queued behind.
    pub(crate) fn after(mut self, start: Vec<PooledEvent>) -> Completion {
        self.after = start;
        self
    }

    /// Waits, with no deadline, for the caller's work queued before the move.
    fn wait_for_callers_work(&self) -> Result<()> {
        for event in &self.after {
            event.wait(Duration::MAX)?;
        }
        Ok(())
    }

    /// The plan the move follows.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether every copy of the move has finished.
    pub fn is_done(&self) -> bool {
        self.done.as_ref().is_none_or(PooledEvent::is_done)
    }

    /// Waits like [`Completion::wait`], but never returns while the device
    /// may still touch the move's memory: for the safe APIs, whose borrows
    /// end when they return. A copy past its deadline is reported and then
    /// waited for without one (a hung copy hangs the caller rather than
    /// writing into memory that has been freed; the unsafe raw API returns
    /// the timeout instead, for callers that can leak their buffers).
    pub(crate) fn wait_holding_borrows(self) -> Result<Plan> {
        self.wait_for_callers_work()?;
        if let Some(done) = &self.done {
            hold_until_done(self.deadline, |deadline| done.wait(deadline))?;
        }
        if let Some(request) = &self.verify {
            verify_bytes(&request.driver, request.src, request.dst, request.len)?;
        }
        Ok(self.plan)
    }

    /// Blocks until the move is done (a [`p2p_core::Error::Timeout`] if it
    /// hangs), then verifies it when the mover was asked to.
    pub fn wait(self) -> Result<Plan> {
        self.wait_for_callers_work()?;
        if let Some(done) = &self.done {
            done.wait(self.deadline)?;
        }
        if let Some(request) = &self.verify {
            verify_bytes(&request.driver, request.src, request.dst, request.len)?;
        }
        Ok(self.plan)
    }
}

/// The end of a queued batch: every copy's completion. Like [`Completion`],
/// owns no memory and does not wait when dropped.
#[derive(Debug, Default)]
#[must_use = "a completion says when the memory of a batch may be touched again"]
pub struct BatchCompletion {
    pub(crate) plans: Vec<Plan>,
    /// Moves queued one by one (routes other than peer).
    pub(crate) parts: Vec<Completion>,
    /// Batched peer copies, one event per source device.
    pub(crate) events: Vec<(PooledEvent, Duration)>,
    pub(crate) verify: Vec<VerifyRequest>,
    /// The caller's work the batched copies wait for (see [`Completion`]).
    pub(crate) after: Vec<PooledEvent>,
}

impl BatchCompletion {
    /// The plan of every item, in order.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    pub fn is_done(&self) -> bool {
        self.parts.iter().all(Completion::is_done)
            && self.events.iter().all(|(event, _)| event.is_done())
    }

    /// Blocks until every copy is done; verifies in verify mode.
    pub fn wait(self) -> Result<Vec<Plan>> {
        for event in &self.after {
            event.wait(Duration::MAX)?;
        }
        let mut first_error = None;
        for (event, deadline) in &self.events {
            if let Err(err) = event.wait(*deadline) {
                first_error.get_or_insert(Error::from(err));
            }
        }
        for part in self.parts {
            if let Err(err) = part.wait() {
                first_error.get_or_insert(err);
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        for request in &self.verify {
            verify_bytes(&request.driver, request.src, request.dst, request.len)?;
        }
        Ok(self.plans)
    }

    /// Like [`BatchCompletion::wait`], for the safe API: never returns while
    /// a copy may still touch borrowed memory.
    pub(crate) fn wait_holding_borrows(self) -> Result<Vec<Plan>> {
        for event in &self.after {
            event.wait(Duration::MAX)?;
        }
        for (event, deadline) in &self.events {
            hold_until_done(*deadline, |d| event.wait(d))?;
        }
        for part in self.parts {
            part.wait_holding_borrows()?;
        }
        for request in &self.verify {
            verify_bytes(&request.driver, request.src, request.dst, request.len)?;
        }
        Ok(self.plans)
    }

    /// Waits for everything queued, ignoring errors (the caller has one already).
    pub(crate) fn wait_quietly(self) {
        for (event, deadline) in &self.events {
            let _ = event.wait(*deadline);
        }
        for part in self.parts {
            if let Some(done) = &part.done {
                let _ = done.wait(part.deadline);
            }
        }
    }
}

/// A queued move that borrows its source and destination: neither can be
/// freed or touched until it is waited for or dropped. Dropping waits.
#[derive(Debug)]
#[must_use = "dropping a transfer waits for it; call wait() to see its errors"]
pub struct Transfer<'a> {
    completion: Option<Completion>,
    _borrows: PhantomData<&'a mut ()>,
}

impl<'a> Transfer<'a> {
    pub(crate) fn new(_mover: &'a Mover, completion: Completion) -> Transfer<'a> {
        Transfer {
            completion: Some(completion),
            _borrows: PhantomData,
        }
    }

    pub fn plan(&self) -> &Plan {
        match &self.completion {
            Some(completion) => completion.plan(),
            None => unreachable!("a transfer holds its completion until consumed"),
        }
    }

    pub fn is_done(&self) -> bool {
        self.completion.as_ref().is_none_or(Completion::is_done)
    }

    /// Blocks until the bytes are there. Never returns while the device may
    /// still touch the borrowed memory (see [`Mover::copy`]).
    pub fn wait(mut self) -> Result<Plan> {
        match self.completion.take() {
            Some(completion) => completion.wait_holding_borrows(),
            None => unreachable!("a transfer holds its completion until consumed"),
        }
    }
}

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        if let Some(completion) = self.completion.take() {
            if let Err(err) = completion.wait_holding_borrows() {
                tracing::error!("a dropped transfer failed: {err}");
            }
        }
    }
}

/// Runs `wait` with `deadline`; past it, logs and waits with no deadline, so
/// that memory borrowed by a safe API is never released under a running copy.
pub(crate) fn hold_until_done(
    deadline: Duration,
    wait: impl Fn(Duration) -> p2p_core::Result<()>,
) -> p2p_core::Result<()> {
    match wait(deadline) {
        Err(p2p_core::Error::Timeout { what, after_ms }) => {
            tracing::error!(
                "{what} is still running after {after_ms} ms; a safe move cannot return while the \
                 device may still use its borrowed memory, so it keeps waiting \
                 (the unsafe raw API returns a timeout instead)"
            );
            wait(Duration::MAX)?;
            tracing::warn!("the late copy finished");
            Ok(())
        }
        other => other,
    }
}

/// Reads both ranges to host memory and compares them.
pub(crate) fn verify_bytes(
    driver: &Arc<dyn Driver>,
    src: RawBytes,
    dst: RawBytes,
    len: usize,
) -> Result<()> {
    let expected = read_back(driver, src, len)?;
    let found = read_back(driver, dst, len)?;
    match expected.iter().zip(&found).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(offset) => Err(Error::VerifyFailed {
            src: src.location(),
            dst: dst.location(),
            offset,
            expected: expected[offset],
            found: found[offset],
        }),
    }
}

fn read_back(driver: &Arc<dyn Driver>, range: RawBytes, len: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    match range {
        RawBytes::Host { ptr, .. } => {
            // SAFETY: the move's contract keeps `ptr` valid for `len` bytes
            // until its completion has been waited for, which is now.
            out.copy_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
        }
        RawBytes::Device(ptr) => {
            let stream = Stream::new(driver, ptr.device)?;
            // SAFETY: as above for the device range; `out` holds `len` bytes
            // and outlives the synchronize.
            unsafe { driver.copy_dtoh_async(out.as_mut_ptr(), ptr, len, stream.id())? };
            stream.synchronize()?;
        }
    }
    Ok(out)
}
