//! The probe's copies on raw device memory: the timed peer copy into a
//! poisoned buffer, and the staging baseline of thorough mode.

use std::sync::Arc;
use std::time::Duration;

use crate::memory::{DeviceBuffer, Event, PinnedBuffer, Stream};
use crate::pattern::{self, first_mismatch, Mismatch};
use crate::{AllocKind, Driver, Error, Result};

pub(super) enum CopyOutcome {
    Correct {
        seconds: f64,
    },
    Corrupt {
        offset: u64,
        expected: u8,
        found: u8,
    },
    TimedOut,
}

/// One peer copy of a pattern into a poisoned buffer, timed by events.
pub(super) fn copy_and_compare(
    driver: &Arc<dyn Driver>,
    from: usize,
    to: usize,
    bytes: usize,
    seed: u64,
    deadline: Duration,
) -> Result<CopyOutcome> {
    let pattern = pattern::bytes(bytes, seed);
    let poison: Vec<u8> = pattern.iter().map(|b| !b).collect();
    let mut src = DeviceBuffer::new(driver, from, bytes, AllocKind::Plain)?;
    let mut dst = DeviceBuffer::new(driver, to, bytes, AllocKind::Plain)?;
    let src_stream = Stream::new(driver, from)?;
    let dst_stream = Stream::new(driver, to)?;
    src.write_from_slice(&pattern, &src_stream)?;
    dst.write_from_slice(&poison, &dst_stream)?;

    let start = Event::with_timing(driver, from)?;
    let end = Event::with_timing(driver, from)?;
    start.record(&src_stream)?;
    // SAFETY: both buffers hold `bytes` bytes and stay alive until the copy
    // is seen finished, or are leaked below when it is not.
    unsafe { driver.copy_peer_async(dst.ptr(), src.ptr(), bytes, src_stream.id())? };
    // From here on the copy may be queued: no way out frees the buffers
    // before it is seen finished.
    let in_flight = InFlight {
        driver: driver.clone(),
        src,
        dst,
        stream: src_stream,
        events: [start, end],
    };
    if let Err(err) = in_flight.events[1].record(&in_flight.stream) {
        in_flight.finish_or_leak(deadline);
        return Err(err);
    }
    match driver.wait_event(in_flight.events[1].id(), deadline) {
        Ok(()) => {}
        Err(Error::Timeout { .. }) => {
            tracing::warn!("peer copy cuda:{from} -> cuda:{to} did not finish within {deadline:?}; leaking its buffers and stream");
            in_flight.leak();
            return Ok(CopyOutcome::TimedOut);
        }
        Err(other) => {
            in_flight.finish_or_leak(deadline);
            return Err(other);
        }
    }
    let InFlight {
        driver: _,
        src: _src,
        dst,
        stream: _src_stream,
        events: [start, end],
    } = in_flight;
    let seconds = f64::from(driver.event_elapsed_ms(start.id(), end.id())?) / 1e3;
    let found = dst.read_to_vec(&dst_stream)?;
    Ok(match first_mismatch(&pattern, &found) {
        None => CopyOutcome::Correct { seconds },
        // `found` has the pattern's length, so both bytes are there.
        Some(Mismatch {
            offset,
            expected,
            found,
        }) => CopyOutcome::Corrupt {
            offset: offset as u64,
            expected: expected.unwrap_or_default(),
            found: found.unwrap_or_default(),
        },
    })
}

/// The resources of a queued peer copy, until it is seen finished.
struct InFlight {
    driver: Arc<dyn Driver>,
    src: DeviceBuffer,
    dst: DeviceBuffer,
    stream: Stream,
    events: [Event; 2],
}

impl InFlight {
    /// The copy may still write into `dst` (or read `src`) some day: freeing
    /// them would hand that memory to the next allocation under the copy.
    fn leak(self) {
        self.src.leak();
        self.dst.leak();
        self.stream.leak();
        for event in self.events {
            event.leak();
        }
    }

    /// After an error with the copy queued: waits (bounded by `deadline`)
    /// for its stream, then frees everything; leaks it all if even that fails.
    fn finish_or_leak(self, deadline: Duration) {
        match self.driver.wait_stream(self.stream.id(), deadline) {
            Ok(()) => drop(self),
            Err(err) => {
                tracing::warn!(
                    "a probe copy on cuda:{} could not be waited for ({err}); leaking its buffers and stream",
                    self.stream.device()
                );
                self.leak();
            }
        }
    }
}

/// The best case of staging through pinned memory: the slower of a timed
/// device-to-host copy on `from` and a host-to-device copy on `to`, which a
/// pipelined staged copy approaches.
pub(super) fn staging_gbps(
    driver: &Arc<dyn Driver>,
    from: usize,
    to: usize,
    bytes: usize,
) -> Result<f64> {
    let mut pinned = PinnedBuffer::new(driver, bytes)?;
    let src = DeviceBuffer::new(driver, from, bytes, AllocKind::Plain)?;
    let dst = DeviceBuffer::new(driver, to, bytes, AllocKind::Plain)?;
    let d2h = time_on_stream(driver, from, |stream| {
        // SAFETY: `pinned` and `src` hold `bytes` and outlive the synchronize in `time_on_stream`.
        unsafe { driver.copy_dtoh_async(pinned.as_mut_ptr(), src.ptr(), bytes, stream) }
    })?;
    let h2d = time_on_stream(driver, to, |stream| {
        // SAFETY: as above, for `dst`.
        unsafe { driver.copy_htod_async(dst.ptr(), pinned.as_ptr(), bytes, stream) }
    })?;
    Ok(gbps(bytes, d2h).min(gbps(bytes, h2d)))
}

/// Runs `work` on a fresh stream of `device` between two events; returns seconds.
fn time_on_stream(
    driver: &Arc<dyn Driver>,
    device: usize,
    work: impl FnOnce(crate::StreamId) -> Result<()>,
) -> Result<f64> {
    let stream = Stream::new(driver, device)?;
    let start = Event::with_timing(driver, device)?;
    let end = Event::with_timing(driver, device)?;
    start.record(&stream)?;
    work(stream.id())?;
    // The copy is queued: whatever fails now, wait for it before the
    // caller's buffers can be freed (a synchronize that fails is tried again).
    let recorded = end.record(&stream);
    stream.synchronize().or_else(|_| stream.synchronize())?;
    recorded?;
    Ok(f64::from(driver.event_elapsed_ms(start.id(), end.id())?) / 1e3)
}

/// GB/s of `bytes` in `seconds`, always finite: a copy timed at zero (or a
/// nonsense time) counts as one nanosecond, since an infinite figure cannot
/// be written to the cache file (JSON has no infinity).
pub(super) fn gbps(bytes: usize, seconds: f64) -> f64 {
    let seconds = if seconds.is_finite() {
        seconds.max(1e-9)
    } else {
        1e-9
    };
    bytes as f64 / seconds / 1e9
}
