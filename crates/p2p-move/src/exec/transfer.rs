//! Handles on queued moves: [`Completion`] (owned), [`BatchCompletion`] and
//! [`Transfer`] (borrowing).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::Stream;
use p2p_core::{Driver, MemRange, StreamId};

use super::parking::Fence;
use super::{Mover, RawBytes, Shared};
use crate::{Error, Plan, Result};

/// What to compare once a move is done (verify mode).
#[derive(Debug)]
pub(crate) struct VerifyRequest {
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
    pub(crate) plans: Vec<Plan>,
    pub(crate) done: Option<Fence>,
    /// The work queued ahead of the move (the caller's, other moves' on
    /// shared streams): the deadline counts from when it is done, since a
    /// long kernel queued before the move is not a hang.
    pub(crate) ahead: Vec<Fence>,
    pub(crate) deadline: Duration,
    pub(crate) verify: Vec<VerifyRequest>,
    /// The mover's streams the move ran on: retired if it hangs.
    pub(crate) streams: Vec<StreamId>,
    /// Peer pairs the move used directly: downgraded if it hangs.
    pub(crate) pairs: Vec<(usize, usize)>,
    pub(crate) shared: Arc<Shared>,
}

impl Completion {
    /// The plan the move follows (the first one, for a batch part).
    pub fn plan(&self) -> &Plan {
        &self.plans[0]
    }

    /// Whether every copy of the move has finished.
    pub fn is_done(&self) -> bool {
        self.done.as_ref().is_none_or(Fence::is_done)
    }

    /// Waits for the work ahead (no deadline of ours), then for the move's
    /// own end (its deadline); a hang retires the move's streams.
    fn wait_inner(&self) -> Result<()> {
        let mut first_error = None;
        for fence in &self.ahead {
            if let Err(err) = fence.wait(Duration::MAX) {
                first_error.get_or_insert(Error::from(err));
            }
        }
        if let Some(done) = &self.done {
            if let Err(err) = done.wait(self.deadline) {
                if matches!(err, p2p_core::Error::Timeout { .. }) {
                    self.shared
                        .report_hang(&self.streams, &self.pairs, self.deadline);
                }
                first_error.get_or_insert(Error::from(err));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn verify(&self) -> Result<()> {
        for request in &self.verify {
            verify_bytes(&self.shared.driver, request.src, request.dst, request.len)?;
        }
        Ok(())
    }

    /// Waits like [`Completion::wait`], but never returns while the device
    /// may still touch the move's memory: for the safe APIs, whose borrows
    /// end when they return. A copy past its deadline is reported (its
    /// streams retired, so later moves do not queue behind it) and then
    /// waited for without one.
    pub(crate) fn wait_holding_borrows(self) -> Result<Vec<Plan>> {
        let waited = self.wait_inner();
        if waited.is_err() {
            if let Some(done) = &self.done {
                hold(done);
            }
        }
        waited?;
        self.verify()?;
        Ok(self.plans)
    }

    /// Blocks until the move is done (a [`p2p_core::Error::Timeout`] if it
    /// hangs: the caller must then keep the memory alive, or leak it), then
    /// verifies it when the mover was asked to.
    pub fn wait(self) -> Result<Plan> {
        self.wait_inner()?;
        self.verify()?;
        let mut plans = self.plans;
        Ok(plans.swap_remove(0))
    }
}

/// Waits for `fence` with no deadline, logging first: a safe move cannot
/// return while the device may still use its borrowed memory.
pub(crate) fn hold(fence: &Fence) {
    if fence.is_done() {
        return;
    }
    tracing::error!(
        "a copy is still running past its deadline; a safe move cannot return while the \
         device may still use its borrowed memory, so it keeps waiting (the unsafe raw API \
         returns a timeout instead)"
    );
    if let Err(err) = fence.wait(Duration::MAX) {
        tracing::error!("waiting for a late copy failed ({err}); polling its stream instead");
        while !fence.is_done() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Blocks until everything queued on `stream` so far is done, for a safe
/// API that must not return while a copy may still use borrowed memory: a
/// failed synchronize is not the end of the work, so it polls the stream
/// instead (as [`hold`] polls a fence).
pub(crate) fn hold_stream(driver: &dyn p2p_core::Driver, stream: p2p_core::StreamId) {
    if let Err(err) = driver.synchronize_stream(stream) {
        tracing::error!(
            "synchronizing a stream of cuda:{} after a failed move failed ({err}); polling it instead",
            stream.device
        );
        if driver.wait_stream(stream, Duration::MAX).is_err() {
            while !matches!(driver.stream_done(stream), Ok(true)) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// The end of a queued batch: every part's completion. Like [`Completion`],
/// owns no memory and does not wait when dropped.
#[derive(Debug, Default)]
#[must_use = "a completion says when the memory of a batch may be touched again"]
pub struct BatchCompletion {
    pub(crate) plans: Vec<Plan>,
    pub(crate) parts: Vec<Completion>,
}

impl BatchCompletion {
    /// The plan of every item, in order.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// Whether every copy has finished.
    pub fn is_done(&self) -> bool {
        self.parts.iter().all(Completion::is_done)
    }

    /// Blocks until every copy is done (each part is waited for, also after
    /// another failed); verifies in verify mode. The first error is returned.
    pub fn wait(self) -> Result<Vec<Plan>> {
        let mut first_error = None;
        for part in self.parts {
            if let Err(err) = part.wait() {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(self.plans), Err)
    }

    /// Like [`BatchCompletion::wait`], for the safe API: never returns
    /// while a copy may still touch borrowed memory.
    pub(crate) fn wait_holding_borrows(self) -> Result<Vec<Plan>> {
        let mut first_error = None;
        for part in self.parts {
            if let Err(err) = part.wait_holding_borrows() {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(self.plans), Err)
    }
}

/// A queued move that borrows its source and destination: neither can be
/// freed or touched until it is waited for or dropped. Dropping waits.
#[derive(Debug)]
#[must_use = "dropping a transfer waits for it; call wait() to see its errors"]
pub struct Transfer<'a> {
    plan: Plan,
    completion: Option<Completion>,
    ranges: Vec<MemRange>,
    driver: Arc<dyn Driver>,
    _borrows: PhantomData<&'a mut ()>,
}

impl<'a> Transfer<'a> {
    pub(crate) fn new(mover: &'a Mover, completion: Completion, ranges: Vec<MemRange>) -> Self {
        Transfer {
            plan: completion.plan().clone(),
            completion: Some(completion),
            ranges,
            driver: mover.driver().clone(),
            _borrows: PhantomData,
        }
    }

    /// The plan the move follows.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the move has finished.
    pub fn is_done(&self) -> bool {
        self.completion.as_ref().is_none_or(Completion::is_done)
    }

    /// Blocks until the bytes are there. Never returns while the device may
    /// still touch the borrowed memory (see [`Mover::copy`]).
    pub fn wait(mut self) -> Result<Plan> {
        let result = match self.completion.take() {
            Some(completion) => completion
                .wait_holding_borrows()
                .map(|mut plans| plans.swap_remove(0)),
            None => Err(Error::Core(p2p_core::Error::Unsupported(
                "a transfer waited for twice".into(),
            ))),
        };
        self.driver.borrows_released(&self.ranges);
        result
    }
}

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        if let Some(completion) = self.completion.take() {
            if let Err(err) = completion.wait_holding_borrows() {
                tracing::error!("a dropped transfer failed: {err}");
            }
            self.driver.borrows_released(&self.ranges);
        }
    }
}

/// A queued batch that borrows every source and target until it is waited
/// for or dropped (dropping waits).
#[derive(Debug)]
#[must_use = "dropping a batch transfer waits for it; call wait() to see its errors"]
pub struct BatchTransfer<'a> {
    batch: Option<BatchCompletion>,
    ranges: Vec<MemRange>,
    driver: Arc<dyn Driver>,
    _borrows: PhantomData<&'a mut ()>,
}

impl<'a> BatchTransfer<'a> {
    pub(crate) fn new(mover: &'a Mover, batch: BatchCompletion, ranges: Vec<MemRange>) -> Self {
        BatchTransfer {
            batch: Some(batch),
            ranges,
            driver: mover.driver().clone(),
            _borrows: PhantomData,
        }
    }

    /// Whether every copy has finished.
    pub fn is_done(&self) -> bool {
        self.batch.as_ref().is_none_or(BatchCompletion::is_done)
    }

    /// Blocks until every copy is done; never returns while the device may
    /// still touch the borrowed memory.
    pub fn wait(mut self) -> Result<Vec<Plan>> {
        let result = match self.batch.take() {
            Some(batch) => batch.wait_holding_borrows(),
            None => Ok(Vec::new()),
        };
        self.driver.borrows_released(&self.ranges);
        result
    }
}

impl Drop for BatchTransfer<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            if let Err(err) = batch.wait_holding_borrows() {
                tracing::error!("a dropped batch transfer failed: {err}");
            }
            self.driver.borrows_released(&self.ranges);
        }
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
