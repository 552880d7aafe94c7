//! The probe of one ordered pair: claim, enable, copy a pattern, compare every byte.
//!
//! A driver's claim is only the first step: on many machines it says yes and
//! the copy delivers zeros or garbage, or never finishes. So the probe copies
//! a pattern that is neither zero nor constant into a destination poisoned
//! with its complement (every byte the copy fails to write is caught), waits
//! with a deadline (a hang becomes a verdict, not a hung process), and reads
//! every byte back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::memory::{DeviceBuffer, Event, PinnedBuffer, Stream};
use crate::{AllocKind, Driver, Error, PeerVerdict, Reason, Result};

/// How thoroughly and how patiently to probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeOptions {
    /// How long a copy may take before the pair is declared hung.
    pub deadline: Duration,
    /// Size of the correctness copy: a few MiB, so that it spans many pages.
    pub pattern_bytes: usize,
    /// Also time the peer copy against staging through pinned host memory.
    pub thorough: bool,
    /// Size of the timed copies in thorough mode.
    pub thorough_bytes: usize,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            deadline: Duration::from_millis(2000),
            pattern_bytes: 4 << 20,
            thorough: false,
            thorough_bytes: 64 << 20,
        }
    }
}

/// The probe pattern: a xorshift byte stream seeded by the pair, never constant.
pub fn probe_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    out
}

/// The first offset where `found` differs from `expected`, with both bytes.
fn first_mismatch(expected: &[u8], found: &[u8]) -> Option<(u64, u8, u8)> {
    expected
        .iter()
        .zip(found)
        .position(|(e, f)| e != f)
        .map(|i| (i as u64, expected[i], found[i]))
}

/// Probes peer copy `from -> to` and returns its verdict.
///
/// `Err` means the probe itself could not run (a device is out of memory,
/// an invalid ordinal, a driver failure outside the copy); such a result says
/// nothing about the pair and is not cached.
pub fn probe_pair(
    driver: &Arc<dyn Driver>,
    from: usize,
    to: usize,
    options: &ProbeOptions,
) -> Result<PeerVerdict> {
    driver.check_device(from)?;
    driver.check_device(to)?;
    let started = Instant::now();
    let claim = driver.claim(from, to)?;
    let verdict = |reason: Reason, peer_gbps: Option<f64>| PeerVerdict {
        from,
        to,
        claimed: claim.claimed(),
        reason,
        peer_gbps,
        probe_micros: started.elapsed().as_micros() as u64,
    };
    if from == to {
        return Ok(verdict(Reason::Verified, None));
    }
    if !claim.claimed() {
        return Ok(verdict(Reason::NotClaimed, None));
    }
    // The source context must reach the destination's memory; the reverse is
    // enabled too (DESIGN.md: both contexts), but only as a courtesy, so that
    // a one-way failure stays a one-way verdict.
    if let Err(err) = driver.enable_peer_access(from, to) {
        return Ok(verdict(
            Reason::EnableFailed {
                detail: err.to_string(),
            },
            None,
        ));
    }
    if let Err(err) = driver.enable_peer_access(to, from) {
        tracing::debug!(
            "enabling cuda:{to} -> cuda:{from} access (reverse of the probed pair): {err}"
        );
    }

    let seed = ((from as u64) << 32) | to as u64;
    match copy_and_compare(
        driver,
        from,
        to,
        options.pattern_bytes,
        seed,
        options.deadline,
    )? {
        CopyOutcome::Correct { .. } => {}
        CopyOutcome::Corrupt {
            offset,
            expected,
            found,
        } => {
            return Ok(verdict(
                Reason::Corrupt {
                    offset,
                    expected,
                    found,
                },
                None,
            ));
        }
        CopyOutcome::TimedOut => {
            return Ok(verdict(
                Reason::Timeout {
                    after_ms: options.deadline.as_millis() as u64,
                },
                None,
            ));
        }
    }
    if !options.thorough {
        return Ok(verdict(Reason::Verified, None));
    }

    let bytes = options.thorough_bytes;
    let peer_seconds =
        match copy_and_compare(driver, from, to, bytes, seed ^ 0xA5A5, options.deadline)? {
            CopyOutcome::Correct { seconds } => seconds,
            CopyOutcome::Corrupt {
                offset,
                expected,
                found,
            } => {
                return Ok(verdict(
                    Reason::Corrupt {
                        offset,
                        expected,
                        found,
                    },
                    None,
                ));
            }
            CopyOutcome::TimedOut => {
                return Ok(verdict(
                    Reason::Timeout {
                        after_ms: options.deadline.as_millis() as u64,
                    },
                    None,
                ));
            }
        };
    let peer_gbps = gbps(bytes, peer_seconds);
    let staged_gbps = staging_gbps(driver, from, to, bytes)?;
    if peer_gbps < staged_gbps {
        return Ok(verdict(
            Reason::SlowerThanStaging {
                peer_gbps,
                staged_gbps,
            },
            Some(peer_gbps),
        ));
    }
    Ok(verdict(Reason::Verified, Some(peer_gbps)))
}

enum CopyOutcome {
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
fn copy_and_compare(
    driver: &Arc<dyn Driver>,
    from: usize,
    to: usize,
    bytes: usize,
    seed: u64,
    deadline: Duration,
) -> Result<CopyOutcome> {
    let pattern = probe_pattern(bytes, seed);
    let poison: Vec<u8> = pattern.iter().map(|b| !b).collect();
    let src = DeviceBuffer::new(driver, from, bytes, AllocKind::Plain)?;
    let dst = DeviceBuffer::new(driver, to, bytes, AllocKind::Plain)?;
    let src_stream = Stream::new(driver, from)?;
    let dst_stream = Stream::new(driver, to)?;
    src.write_from_slice(&pattern, &src_stream)?;
    dst.write_from_slice(&poison, &dst_stream)?;

    let start = Event::new(driver, from)?;
    let end = Event::new(driver, from)?;
    start.record(&src_stream)?;
    // SAFETY: both buffers hold `bytes` bytes and stay alive until `end` is
    // done, or are leaked below when it never is.
    unsafe { driver.copy_peer_async(dst.ptr(), src.ptr(), bytes, src_stream.id())? };
    end.record(&src_stream)?;
    match driver.wait_event(end.id(), deadline) {
        Ok(()) => {}
        Err(Error::Timeout { .. }) => {
            // The copy may still write into `dst` (or read `src`) some day:
            // freeing them would hand that memory to the next allocation.
            tracing::warn!("peer copy cuda:{from} -> cuda:{to} did not finish within {deadline:?}; leaking its buffers and stream");
            src.leak();
            dst.leak();
            src_stream.leak();
            start.leak();
            end.leak();
            return Ok(CopyOutcome::TimedOut);
        }
        Err(other) => return Err(other),
    }
    let seconds = f64::from(driver.event_elapsed_ms(start.id(), end.id())?) / 1e3;
    let found = dst.read_to_vec(&dst_stream)?;
    Ok(match first_mismatch(&pattern, &found) {
        None => CopyOutcome::Correct { seconds },
        Some((offset, expected, found)) => CopyOutcome::Corrupt {
            offset,
            expected,
            found,
        },
    })
}

/// The best case of staging through pinned memory: the slower of a timed
/// device-to-host copy on `from` and a host-to-device copy on `to`, which a
/// pipelined staged copy approaches.
fn staging_gbps(driver: &Arc<dyn Driver>, from: usize, to: usize, bytes: usize) -> Result<f64> {
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
    let start = Event::new(driver, device)?;
    let end = Event::new(driver, device)?;
    start.record(&stream)?;
    work(stream.id())?;
    end.record(&stream)?;
    stream.synchronize()?;
    Ok(f64::from(driver.event_elapsed_ms(start.id(), end.id())?) / 1e3)
}

fn gbps(bytes: usize, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return f64::INFINITY;
    }
    bytes as f64 / seconds / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_not_constant_and_depends_on_seed() {
        let a = probe_pattern(4096, 1);
        let b = probe_pattern(4096, 2);
        assert_ne!(a, b);
        assert!(a.windows(2).any(|w| w[0] != w[1]));
        assert!(a.iter().any(|&x| x != 0));
        assert_eq!(probe_pattern(13, 7).len(), 13);
    }

    #[test]
    fn mismatch_reports_first_offset() {
        assert_eq!(first_mismatch(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_mismatch(&[1, 2, 3], &[1, 9, 0]), Some((1, 2, 9)));
    }
}
