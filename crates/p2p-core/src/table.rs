//! The thread-safe table of verdicts: each pair probed lazily, once, and
//! downgraded when a move finds it broken.
//!
//! Many threads may ask for the same pair at the same moment; one of them
//! probes and the others wait for its answer. Pairs nobody asks about are
//! never probed (no contexts on idle GPUs) unless [`PeerTable::probe_all`] is
//! called. Verdicts come, in order of precedence, from the operator's
//! policy (`disabled-by-policy`, never cached), the cache file (a `verified`
//! one re-checked by a short copy first), or a probe. A probe that fails
//! with an error is remembered, and tried again only after a backoff.
//!
//! Peer access follows the verdicts through one [`PeerAccess`]: verified
//! directions are enabled, every other direction is disabled.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::cache::{now_ms, CachedVerdict, Fingerprint, VerdictCache};
use crate::config::{CacheSetting, Config};
use crate::probe::{probe_with, revalidate};
use crate::{Driver, Error, PeerAccess, PeerVerdict, Reason, Result};

/// The wait before the first retry of a probe that failed with an error;
/// it doubles with each failure in a row, up to [`RETRY_BACKOFF_MAX`].
pub const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between retries of a probe that keeps failing.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// One ordered pair's slot: what is known, and a lock held while probing.
#[derive(Debug, Default)]
struct Cell {
    slot: RwLock<Slot>,
    probing: Mutex<()>,
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Unknown,
    Known(Known),
    /// The last probe failed with an error (not a verdict).
    Failed(Failure),
}

#[derive(Debug, Clone)]
struct Known {
    verdict: PeerVerdict,
    /// What the cache file should hold for the pair (`None`: not cached, as
    /// a policy verdict or a device with itself).
    entry: Option<CachedVerdict>,
}

#[derive(Debug)]
struct Failure {
    detail: String,
    in_a_row: u32,
    retry_at: Instant,
}

/// What [`PeerTable::decide`] found, and whether the cache must hear of it.
struct Decided {
    known: Known,
    fresh: bool,
}

/// Verdicts for every ordered pair of one machine: the way to learn which
/// pairs may use direct peer copy.
///
/// Share one table per process (in an `Arc`): it probes each pair once,
/// lazily, keeps peer access in line with the verdicts, and reads and writes
/// the on-disk cache that [`Config::cache`] names.
///
/// ```
/// use std::sync::Arc;
/// use p2p_core::{Config, Driver, PairState, PeerTable, SimDriver};
///
/// // The built-in simulated machine: four GPUs, and 2 -> 3 delivers zeros.
/// let driver: Arc<dyn Driver> = Arc::new(SimDriver::builtin());
/// let table = PeerTable::new(driver, Config::default()); // no cache, nothing disabled
///
/// for verdict in table.probe_all()? {
///     println!("{verdict}"); // cuda:0 -> cuda:1: verified, ...
/// }
/// let broken = table.verdict(2, 3)?; // known now: no second probe
/// assert_eq!(broken.state(), PairState::Broken);
/// println!("2 -> 3 is {}: {}", broken.state(), broken.reason);
/// assert!(table.is_verified(3, 2)); // verdicts are directed
///
/// // A device the machine lacks is an error, not a verdict.
/// let err = table.verdict(0, 9).unwrap_err();
/// println!("{err}"); // device 9 does not exist: this machine has 4 GPU(s)
/// # Ok::<(), p2p_core::Error>(())
/// ```
#[derive(Debug)]
pub struct PeerTable {
    driver: Arc<dyn Driver>,
    config: Config,
    access: PeerAccess,
    cache: Option<VerdictCache>,
    /// Verdicts loaded from the cache, by pair (consulted before probing).
    cached: Vec<Option<CachedVerdict>>,
    cells: Vec<Cell>,
    /// Serialises cache writes of this process.
    store_lock: Mutex<()>,
    /// How many times the cache file was written (see [`PeerTable::cache_writes`]).
    writes: AtomicU64,
}

impl PeerTable {
    /// A table for `driver`'s machine. Reads the cache (unless `config.reprobe`);
    /// probes nothing yet.
    ///
    /// Never fails: an unreadable cache file is ignored with a warning (and
    /// replaced on the next write), and a disabled pair naming a GPU the
    /// machine lacks is a warning (the CLI refuses it first).
    pub fn new(driver: Arc<dyn Driver>, config: Config) -> PeerTable {
        let n = driver.device_count();
        if let Err(message) = config.disabled.check_devices(n) {
            tracing::warn!("{}: {message}", crate::config::ENV_DISABLE);
        }
        let cache = match &config.cache {
            CacheSetting::Off => None,
            CacheSetting::Dir(dir) => {
                Some(VerdictCache::new(dir, Fingerprint::of(driver.as_ref())))
            }
        };
        let mut cached = vec![None; n * n];
        if let (Some(cache), false) = (&cache, config.reprobe) {
            for entry in cache.load() {
                let (from, to) = (entry.verdict.from, entry.verdict.to);
                if from < n && to < n && from != to {
                    cached[from * n + to] = Some(entry);
                }
            }
        }
        PeerTable {
            access: PeerAccess::new(driver.clone()),
            driver,
            config,
            cache,
            cached,
            cells: (0..n * n).map(|_| Cell::default()).collect(),
            store_lock: Mutex::new(()),
            writes: AtomicU64::new(0),
        }
    }

    /// The driver whose pairs this table judges.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The settings the table was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The process's peer access, as the table's verdicts left it (the
    /// executor grants pools through it).
    pub fn peer_access(&self) -> &PeerAccess {
        &self.access
    }

    /// Number of devices of the machine.
    pub fn device_count(&self) -> usize {
        self.driver.device_count()
    }

    /// The cache file in use, if any.
    pub fn cache_path(&self) -> Option<&Path> {
        self.cache.as_ref().map(VerdictCache::path)
    }

    /// How many times this table has written its cache file: once per
    /// verdict found alone, once per [`PeerTable::probe_all`] batch.
    pub fn cache_writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// The verdict for `from -> to`, probing it now if nobody has yet.
    /// Threads asking for the same pair at once share one probe.
    ///
    /// # Errors
    /// [`Error::InvalidDevice`] for an ordinal the machine lacks; the
    /// probe's own error when it could not run (out of memory, a driver
    /// failure), which says nothing about the pair. Such a failure is
    /// remembered: until its backoff ([`RETRY_BACKOFF_FIRST`], doubling up
    /// to [`RETRY_BACKOFF_MAX`]) has passed the answer is
    /// [`Error::ProbeFailed`], without probing again.
    pub fn verdict(&self, from: usize, to: usize) -> Result<PeerVerdict> {
        let (verdict, fresh) = self.lookup(from, to)?;
        if fresh {
            self.store();
        }
        Ok(verdict)
    }

    /// Whether peer copy `from -> to` may be used. A probe that could not run
    /// (out of memory, driver failure) counts as not verified, with a warning.
    pub fn is_verified(&self, from: usize, to: usize) -> bool {
        match self.verdict(from, to) {
            Ok(verdict) => verdict.is_verified(),
            Err(err @ Error::ProbeFailed { .. }) => {
                tracing::debug!("{err}; not using peer copy");
                false
            }
            Err(err) => {
                tracing::warn!(
                    "could not probe cuda:{from} -> cuda:{to}: {err}; not using peer copy"
                );
                false
            }
        }
    }

    /// The verdict if already known, without probing.
    pub fn known(&self, from: usize, to: usize) -> Option<PeerVerdict> {
        let cell = self.cell(from, to)?;
        match &*read(&cell.slot) {
            Slot::Known(known) => Some(known.verdict.clone()),
            _ => None,
        }
    }

    /// Every ordered pair of distinct devices, probing what is not known yet,
    /// in order (`0 -> 1`, `0 -> 2`, ..., `1 -> 0`, ...). The cache file is
    /// written once for the whole batch.
    ///
    /// # Errors
    /// The first pair whose probe could not run ends the batch with that
    /// error, as [`PeerTable::verdict`] gives it; the verdicts found before
    /// it are kept (and cached).
    pub fn probe_all(&self) -> Result<Vec<PeerVerdict>> {
        let n = self.device_count();
        let mut all = Vec::with_capacity(n * n.saturating_sub(1));
        let mut fresh = false;
        let mut failed = None;
        'pairs: for from in 0..n {
            for to in (0..n).filter(|&to| to != from) {
                match self.lookup(from, to) {
                    Ok((verdict, new)) => {
                        fresh |= new;
                        all.push(verdict);
                    }
                    Err(err) => {
                        failed = Some(err);
                        break 'pairs;
                    }
                }
            }
        }
        // What was found before a failure is worth keeping.
        if fresh {
            self.store();
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(all),
        }
    }

    /// Records that a move found `from -> to` broken (it timed out, or
    /// delivered wrong bytes): the pair's verdict becomes `reason` at once
    /// (later plans route around it), peer access for the direction is
    /// disabled, and the cache hears of it as a transient verdict (the pair
    /// may recover, so it is probed again after the expiry).
    ///
    /// The verdict is replaced even if disabling access or writing the
    /// cache fails; the first such failure is returned. A `verified` reason
    /// or a device paired with itself is [`Error::Unsupported`].
    pub fn downgrade(&self, from: usize, to: usize, reason: Reason) -> Result<()> {
        self.driver.check_device(from)?;
        self.driver.check_device(to)?;
        if from == to {
            return Err(Error::Unsupported(format!(
                "downgrading cuda:{from} -> cuda:{from}: a device always reaches its own memory"
            )));
        }
        if matches!(reason, Reason::Verified) {
            return Err(Error::Unsupported(format!(
                "downgrading cuda:{from} -> cuda:{to} to `verified`"
            )));
        }
        let cell = &self.cells[from * self.device_count() + to];
        // A probe of the pair running now would install its verdict after
        // ours: wait for it (it is bounded by the probe deadline), so that
        // the downgrade is the last word.
        let _probing = cell.probing.lock().unwrap_or_else(|e| e.into_inner());
        let claimed = match self.known(from, to) {
            Some(verdict) => verdict.claimed,
            None => self.driver.claim(from, to)?.claimed(),
        };
        tracing::warn!(
            "cuda:{from} -> cuda:{to} downgraded: {}; later moves avoid direct peer copy",
            reason.describe()
        );
        let verdict = PeerVerdict {
            from,
            to,
            claimed,
            reason,
            peer_gbps: None,
            probe_micros: 0,
        };
        let entry = CachedVerdict::transient(self.config.probe.thorough, verdict.clone(), now_ms());
        *write(&cell.slot) = Slot::Known(Known {
            verdict,
            entry: Some(entry),
        });
        let closed = self.access.disable(from, to);
        let stored = self.try_store();
        closed.and(stored)
    }

    fn cell(&self, from: usize, to: usize) -> Option<&Cell> {
        let n = self.device_count();
        (from < n && to < n).then(|| &self.cells[from * n + to])
    }

    /// The verdict, and whether it is new to the cache (not written yet).
    fn lookup(&self, from: usize, to: usize) -> Result<(PeerVerdict, bool)> {
        self.driver.check_device(from)?;
        self.driver.check_device(to)?;
        let cell = &self.cells[from * self.device_count() + to];
        if let Some(settled) = settled(cell, from, to) {
            return settled.map(|verdict| (verdict, false));
        }
        let _probing = cell.probing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(settled) = settled(cell, from, to) {
            return settled.map(|verdict| (verdict, false));
        }
        match self.decide(from, to) {
            Ok(decided) => {
                let verdict = decided.known.verdict.clone();
                *write(&cell.slot) = Slot::Known(decided.known);
                Ok((verdict, decided.fresh))
            }
            Err(err) => {
                let mut slot = write(&cell.slot);
                let in_a_row = match &*slot {
                    Slot::Failed(failure) => failure.in_a_row.saturating_add(1),
                    _ => 1,
                };
                let backoff = RETRY_BACKOFF_FIRST
                    .saturating_mul(1u32 << (in_a_row - 1).min(16))
                    .min(RETRY_BACKOFF_MAX);
                tracing::warn!(
                    "probing cuda:{from} -> cuda:{to} failed: {err}; trying again in {backoff:?} at the earliest"
                );
                *slot = Slot::Failed(Failure {
                    detail: err.to_string(),
                    in_a_row,
                    retry_at: Instant::now() + backoff,
                });
                Err(err)
            }
        }
    }

    /// Policy first, then the cache, then a probe.
    fn decide(&self, from: usize, to: usize) -> Result<Decided> {
        let thorough = self.config.probe.thorough;
        let probed = |verdict: PeerVerdict| {
            tracing::info!(
                "probed cuda:{from} -> cuda:{to}: {}",
                verdict.reason.describe()
            );
            let entry =
                (from != to).then(|| CachedVerdict::new(thorough, verdict.clone(), now_ms()));
            Decided {
                fresh: entry.is_some(),
                known: Known { verdict, entry },
            }
        };
        if from != to && self.config.disabled.contains(from, to) {
            let claimed = self.driver.claim(from, to)?.claimed();
            let verdict = PeerVerdict {
                from,
                to,
                claimed,
                reason: Reason::DisabledByPolicy,
                peer_gbps: None,
                probe_micros: 0,
            };
            self.follow(&verdict);
            return Ok(Decided {
                known: Known {
                    verdict,
                    entry: None,
                },
                fresh: false,
            });
        }
        let n = self.device_count();
        if let Some(entry) = &self.cached[from * n + to] {
            if entry.thorough || !thorough {
                if !entry.verdict.is_verified() {
                    self.follow(&entry.verdict);
                    return Ok(Decided {
                        known: Known {
                            verdict: entry.verdict.clone(),
                            entry: Some(entry.clone()),
                        },
                        fresh: false,
                    });
                }
                // Peer access is per process, and what breaks a path can
                // change unseen: check the cached path with a short copy
                // (which opens it) before this process trusts it.
                match revalidate(&self.access, from, to, &self.config.probe) {
                    Ok(None) => {
                        return Ok(Decided {
                            known: Known {
                                verdict: entry.verdict.clone(),
                                entry: Some(entry.clone()),
                            },
                            fresh: false,
                        })
                    }
                    Ok(Some(reason @ Reason::Timeout { .. })) => {
                        // Probing again would hang for the deadline once more.
                        tracing::warn!("cached verdict says cuda:{from} -> cuda:{to} works, but a check copy timed out");
                        let verdict = PeerVerdict {
                            reason,
                            peer_gbps: None,
                            ..entry.verdict.clone()
                        };
                        self.follow(&verdict);
                        return Ok(probed(verdict));
                    }
                    Ok(Some(reason)) => tracing::warn!(
                        "cached verdict says cuda:{from} -> cuda:{to} works, but a check copy found {}; probing again",
                        reason.describe()
                    ),
                    Err(err) => tracing::warn!(
                        "cached verdict says cuda:{from} -> cuda:{to} works, but checking it failed ({err}); probing again"
                    ),
                }
            }
        }
        let verdict = probe_with(&self.access, from, to, &self.config.probe)?;
        Ok(probed(verdict))
    }

    /// Opens or closes the direction as `verdict` says (a failure is a warning:
    /// the verdict stands either way).
    fn follow(&self, verdict: &PeerVerdict) {
        if let Err(err) = self.access.apply(verdict) {
            tracing::warn!(
                "could not {} peer access cuda:{} -> cuda:{}: {err}",
                if verdict.is_verified() {
                    "enable"
                } else {
                    "disable"
                },
                verdict.from,
                verdict.to
            );
        }
    }

    /// Writes what this process knows to the cache; failures are warnings.
    fn store(&self) {
        if let Err(err) = self.try_store() {
            tracing::warn!("could not write the verdict cache: {err}");
        }
    }

    /// Merges every known verdict into the cache file (see [`VerdictCache::merge`]).
    fn try_store(&self) -> Result<()> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let _writing = self.store_lock.lock().unwrap_or_else(|e| e.into_inner());
        let ours: Vec<CachedVerdict> = self
            .cells
            .iter()
            .filter_map(|cell| match &*read(&cell.slot) {
                Slot::Known(known) => known.entry.clone(),
                _ => None,
            })
            .collect();
        self.writes.fetch_add(1, Ordering::Relaxed);
        cache.merge(&ours)
    }
}

/// The cell's answer if it needs no probe: a known verdict, or a failure
/// still inside its backoff.
fn settled(cell: &Cell, from: usize, to: usize) -> Option<Result<PeerVerdict>> {
    match &*read(&cell.slot) {
        Slot::Unknown => None,
        Slot::Known(known) => Some(Ok(known.verdict.clone())),
        Slot::Failed(failure) => {
            let left = failure.retry_at.checked_duration_since(Instant::now())?;
            Some(Err(Error::ProbeFailed {
                from,
                to,
                detail: failure.detail.clone(),
                retry_in_ms: left.as_millis() as u64,
            }))
        }
    }
}

// Slots are replaced whole, so one is never half-written: a lock poisoned
// by a panicking holder still guards a consistent value.
fn read(slot: &RwLock<Slot>) -> std::sync::RwLockReadGuard<'_, Slot> {
    slot.read().unwrap_or_else(|e| e.into_inner())
}

fn write(slot: &RwLock<Slot>) -> std::sync::RwLockWriteGuard<'_, Slot> {
    slot.write().unwrap_or_else(|e| e.into_inner())
}
