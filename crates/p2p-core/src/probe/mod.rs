//! The probe of one ordered pair: claim, enable, copy a pattern, compare every byte.
//!
//! A driver's claim is only the first step: on many machines it says yes and
//! the copy delivers zeros or garbage, or never finishes. So the probe copies
//! a pattern ([`crate::pattern`]) that is neither zero nor constant into a destination poisoned
//! with its complement (every byte the copy fails to write is caught), waits
//! with a deadline (a hang becomes a verdict, not a hung process), and reads
//! every byte back.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod raw_copy;

use raw_copy::{copy_and_compare, gbps, staging_gbps, CopyOutcome};

use crate::{Driver, PeerAccess, PeerVerdict, Reason, Result};

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

impl ProbeOptions {
    /// A short probe for simulated machines and tests: a 256 KiB pattern,
    /// a 200 ms deadline (virtual time on the simulator, where it passes
    /// without sleeping), not thorough. Real machines keep the default,
    /// whose 4 MiB pattern spans more pages.
    pub fn quick() -> ProbeOptions {
        ProbeOptions {
            deadline: Duration::from_millis(200),
            pattern_bytes: 256 << 10,
            thorough: false,
            thorough_bytes: 1 << 20,
        }
    }
}

/// How many bytes re-validate a cached `verified` (at most the probe's own size).
pub(crate) const REVALIDATE_BYTES: usize = 64 << 10;

/// Probes peer copy `from -> to` and returns its verdict, with peer access
/// managed by a [`PeerAccess`] of its own (see [`probe_with`]).
///
/// `Err` means the probe itself could not run (a device is out of memory,
/// an invalid ordinal, a driver failure outside the copy); such a result says
/// nothing about the pair and is not cached.
///
/// This is the one-off probe, with no cache and no sharing between threads;
/// programs ask a [`crate::PeerTable`] instead.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use p2p_core::{probe_pair, Driver, ProbeOptions, Reason, SimDriver};
///
/// let driver: Arc<dyn Driver> = Arc::new(SimDriver::builtin());
/// let options = ProbeOptions {
///     deadline: Duration::from_millis(500),
///     ..ProbeOptions::default()
/// };
/// // The driver claims 2 -> 3, enabling works, and the copy delivers zeros.
/// let verdict = probe_pair(&driver, 2, 3, &options)?;
/// println!("{verdict}"); // cuda:2 -> cuda:3: corrupt: first bad byte at offset ...
/// assert!(verdict.claimed && !verdict.is_verified());
/// assert!(matches!(verdict.reason, Reason::Corrupt { found: 0, .. }));
///
/// assert!(probe_pair(&driver, 3, 2, &options)?.is_verified());
/// # Ok::<(), p2p_core::Error>(())
/// ```
pub fn probe_pair(
    driver: &Arc<dyn Driver>,
    from: usize,
    to: usize,
    options: &ProbeOptions,
) -> Result<PeerVerdict> {
    probe_with(&PeerAccess::new(driver.clone()), from, to, options)
}

/// Probes peer copy `from -> to`, opening the direction through `access` for
/// the test copy and closing it again unless the verdict is `verified`: a
/// broken direction left open would be taken by other code in the process.
/// Only the direction probed is touched (verdicts are directed).
pub fn probe_with(
    access: &PeerAccess,
    from: usize,
    to: usize,
    options: &ProbeOptions,
) -> Result<PeerVerdict> {
    let driver = access.driver();
    driver.check_device(from)?;
    driver.check_device(to)?;
    let outcome = probe_open(access, from, to, options);
    let close = match &outcome {
        Ok(verdict) => !verdict.is_verified() && verdict.reason != Reason::NotClaimed,
        // The probe may have opened the direction before it failed.
        Err(_) => access.is_enabled(from, to),
    };
    if close && from != to {
        if let Err(err) = access.disable(from, to) {
            tracing::warn!(
                "could not disable peer access cuda:{from} -> cuda:{to} after its probe failed: {err}"
            );
        }
    }
    outcome
}

/// The probe proper; leaves the direction open whatever it found.
fn probe_open(
    access: &PeerAccess,
    from: usize,
    to: usize,
    options: &ProbeOptions,
) -> Result<PeerVerdict> {
    let driver = access.driver();
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
    // Only the direction under test: the source context must reach the
    // destination's memory. Enabling the reverse too would open a path
    // nobody has checked.
    if let Err(err) = access.enable(from, to) {
        return Ok(verdict(
            Reason::EnableFailed {
                detail: err.to_string(),
            },
            None,
        ));
    }

    let seed = pair_seed(from, to);
    let outcome = copy_and_compare(
        driver,
        from,
        to,
        options.pattern_bytes,
        seed,
        options.deadline,
    )?;
    if let Err(reason) = outcome_reason(outcome, options.deadline) {
        return Ok(verdict(reason, None));
    }
    if !options.thorough {
        return Ok(verdict(Reason::Verified, None));
    }

    let bytes = options.thorough_bytes;
    let outcome = copy_and_compare(driver, from, to, bytes, seed ^ 0xA5A5, options.deadline)?;
    let peer_seconds = match outcome_reason(outcome, options.deadline) {
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

/// Checks a direction cached as verified with one short pattern copy, before
/// this process trusts it (what breaks peer copy can change without anything
/// in the fingerprint changing). Opens the direction through `access` first,
/// as the copy must take the direct path to test it. `Ok(None)`: the bytes
/// arrived; `Ok(Some(reason))`: they did not, or not in time.
pub(crate) fn revalidate(
    access: &PeerAccess,
    from: usize,
    to: usize,
    options: &ProbeOptions,
) -> Result<Option<Reason>> {
    let driver = access.driver();
    driver.check_device(from)?;
    driver.check_device(to)?;
    if from == to {
        return Ok(None);
    }
    access.enable(from, to)?;
    let bytes = options.pattern_bytes.clamp(1, REVALIDATE_BYTES);
    let outcome = copy_and_compare(
        driver,
        from,
        to,
        bytes,
        // Another pattern than the probe's, from a fresh allocation.
        pair_seed(from, to) ^ 0x005E_ED0F_C0DE,
        options.deadline,
    )?;
    Ok(outcome_reason(outcome, options.deadline).err())
}

/// A copy that failed ends the probe with its reason; a correct one gives its time.
fn outcome_reason(outcome: CopyOutcome, deadline: Duration) -> std::result::Result<f64, Reason> {
    match outcome {
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
            after_ms: deadline.as_millis() as u64,
        }),
    }
}

/// The pattern's seed for a pair: the same on every run, so that a corrupt
/// offset can be reproduced; the poisoned destination (the complement of the
/// pattern) already makes every byte the copy fails to write show.
fn pair_seed(from: usize, to: usize) -> u64 {
    ((from as u64) << 32) | to as u64
}
