//! The thread-safe table of verdicts: each pair probed lazily, once.
//!
//! Many threads may ask for the same pair at the same moment; one of them
//! probes and the others wait for its answer. Pairs nobody asks about are
//! never probed (no contexts on idle GPUs) unless [`PeerTable::probe_all`] is
//! called. Verdicts come, in order of precedence, from the operator's
//! policy (`disabled-by-policy`, never cached), the cache file, or a probe.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use crate::cache::{CachedVerdict, Fingerprint, VerdictCache};
use crate::config::{CacheSetting, Config};
use crate::probe::probe_pair;
use crate::{Driver, PeerVerdict, Reason, Result};

/// One ordered pair's slot: the verdict once known, and a lock held while probing.
#[derive(Debug, Default)]
struct Cell {
    verdict: OnceLock<PeerVerdict>,
    probing: Mutex<()>,
}

/// Verdicts for every ordered pair of one machine.
#[derive(Debug)]
pub struct PeerTable {
    driver: Arc<dyn Driver>,
    config: Config,
    cache: Option<VerdictCache>,
    /// Verdicts loaded from the cache, by pair (consulted before probing).
    cached: Vec<Option<CachedVerdict>>,
    cells: Vec<Cell>,
    /// Serialises cache writes of this process.
    store_lock: Mutex<()>,
}

impl PeerTable {
    /// A table for `driver`'s machine. Reads the cache (unless `config.reprobe`).
    pub fn new(driver: Arc<dyn Driver>, config: Config) -> PeerTable {
        let n = driver.device_count();
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
            driver,
            config,
            cache,
            cached,
            cells: (0..n * n).map(|_| Cell::default()).collect(),
            store_lock: Mutex::new(()),
        }
    }

    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn device_count(&self) -> usize {
        self.driver.device_count()
    }

    /// The cache file in use, if any.
    pub fn cache_path(&self) -> Option<&Path> {
        self.cache.as_ref().map(VerdictCache::path)
    }

    /// The verdict for `from -> to`, probing it now if nobody has yet.
    pub fn verdict(&self, from: usize, to: usize) -> Result<PeerVerdict> {
        self.driver.check_device(from)?;
        self.driver.check_device(to)?;
        let n = self.device_count();
        let cell = &self.cells[from * n + to];
        if let Some(known) = cell.verdict.get() {
            return Ok(known.clone());
        }
        let _probing = cell.probing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = cell.verdict.get() {
            return Ok(known.clone());
        }
        let (verdict, fresh) = self.decide(from, to)?;
        let verdict = cell.verdict.get_or_init(|| verdict).clone();
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
        let n = self.device_count();
        (from < n && to < n)
            .then(|| self.cells[from * n + to].verdict.get().cloned())
            .flatten()
    }

    /// Every ordered pair of distinct devices, probing what is not known yet.
    pub fn probe_all(&self) -> Result<Vec<PeerVerdict>> {
        let n = self.device_count();
        let mut all = Vec::with_capacity(n * n.saturating_sub(1));
        for from in 0..n {
            for to in (0..n).filter(|&to| to != from) {
                all.push(self.verdict(from, to)?);
            }
        }
        Ok(all)
    }

    /// Policy first, then the cache, then a probe. `fresh` = came from a probe.
    fn decide(&self, from: usize, to: usize) -> Result<(PeerVerdict, bool)> {
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
            return Ok((verdict, false));
        }
        let n = self.device_count();
        if let Some(entry) = &self.cached[from * n + to] {
            if entry.thorough || !self.config.probe.thorough {
                if entry.verdict.is_verified() {
                    // Peer access is per process: a verdict from the cache
                    // says the path works, but this process has not opened it
                    // yet, and without it the driver quietly stages the copy.
                    if let Err(err) = self.driver.enable_peer_access(from, to) {
                        tracing::warn!(
                            "cached verdict says cuda:{from} -> cuda:{to} works, but enabling it failed ({err}); probing again"
                        );
                        let verdict = probe_pair(&self.driver, from, to, &self.config.probe)?;
                        return Ok((verdict, true));
                    }
                    if let Err(err) = self.driver.enable_peer_access(to, from) {
                        tracing::debug!("enabling cuda:{to} -> cuda:{from} access (reverse of a cached pair): {err}");
                    }
                }
                return Ok((entry.verdict.clone(), false));
            }
        }
        let verdict = probe_pair(&self.driver, from, to, &self.config.probe)?;
        tracing::info!(
            "probed cuda:{from} -> cuda:{to}: {}",
            verdict.reason.describe()
        );
        Ok((verdict, from != to))
    }

    /// Writes every probed verdict (plus cached ones not re-probed) to the cache.
    fn store(&self) {
        let Some(cache) = &self.cache else { return };
        let _writing = self.store_lock.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.device_count();
        let thorough = self.config.probe.thorough;
        let entries: Vec<CachedVerdict> = (0..n * n)
            .filter_map(|i| {
                let cached = self.cached[i].as_ref();
                let probed = self.cells[i]
                    .verdict
                    .get()
                    .filter(|v| v.from != v.to && v.reason != Reason::DisabledByPolicy)
                    .map(|v| match cached {
                        // Taken from the cache: keep the mode that produced it.
                        Some(entry) if entry.verdict == *v => entry.clone(),
                        _ => CachedVerdict {
                            thorough,
                            verdict: v.clone(),
                        },
                    });
                probed.or_else(|| cached.cloned())
            })
            .collect();
        // Another process may have written pairs since we read the file:
        // keep those we know nothing about (our own answers win).
        let mut entries = entries;
        for theirs in cache.load() {
            let pair = (theirs.verdict.from, theirs.verdict.to);
            if !entries
                .iter()
                .any(|e| (e.verdict.from, e.verdict.to) == pair)
            {
                entries.push(theirs);
            }
        }
        if let Err(err) = cache.store(&entries) {
            tracing::warn!("could not write the verdict cache: {err}");
        }
    }
}
