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

mod raw_copy;

use raw_copy::{copy_and_compare, gbps, staging_gbps, CopyOutcome};

use crate::{Driver, PeerVerdict, Reason, Result};

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
pub(super) fn first_mismatch(expected: &[u8], found: &[u8]) -> Option<(u64, u8, u8)> {
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
    // A copy that failed ends the probe with its reason; a correct one gives its time.
    let failed = |outcome: CopyOutcome| match outcome {
        CopyOutcome::Correct { seconds } => Ok(seconds),
        CopyOutcome::Corrupt {
            offset,
            expected,
            found,
        } => Err(Reason::Corrupt {
            offset,
            expected,
            found,
        }),
        CopyOutcome::TimedOut => Err(Reason::Timeout {
            after_ms: options.deadline.as_millis() as u64,
        }),
    };
    let outcome = copy_and_compare(
        driver,
        from,
        to,
        options.pattern_bytes,
        seed,
        options.deadline,
    )?;
    if let Err(reason) = failed(outcome) {
        return Ok(verdict(reason, None));
    }
    if !options.thorough {
        return Ok(verdict(Reason::Verified, None));
    }

    let bytes = options.thorough_bytes;
    let outcome = copy_and_compare(driver, from, to, bytes, seed ^ 0xA5A5, options.deadline)?;
    let peer_seconds = match failed(outcome) {
        Ok(seconds) => seconds,
        Err(reason) => return Ok(verdict(reason, None)),
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
