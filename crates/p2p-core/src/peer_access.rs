//! Which direct peer paths this process has opened: verified directions are
//! enabled, every direction found broken is disabled, pools are granted once.
//!
//! Peer access is process state that other code in the process shares: a
//! direction left enabled after a probe found it broken makes another
//! library's copy take the broken path, where the driver would otherwise have
//! staged it correctly through host memory. So the probe, the table and the
//! executor all open and close paths through this one place, which also
//! remembers what it did (to skip repeated driver calls, and for tests).

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Driver, PeerVerdict, PoolId, Reason, Result};

/// Opens and closes peer access of one driver, and remembers what it did.
pub struct PeerAccess {
    driver: Arc<dyn Driver>,
    state: Mutex<AccessState>,
}

/// What this value has done, by `(accessor, owner)` direction.
#[derive(Debug, Default)]
struct AccessState {
    /// Directions enabled through this value and not disabled since.
    enabled: BTreeSet<(usize, usize)>,
    /// Directions disabled through this value and not enabled since.
    disabled: BTreeSet<(usize, usize)>,
    /// `(pool, accessor)` grants made.
    pools: HashSet<(PoolId, usize)>,
}

impl PeerAccess {
    /// Nothing opened or closed yet.
    pub fn new(driver: Arc<dyn Driver>) -> PeerAccess {
        PeerAccess {
            driver,
            state: Mutex::new(AccessState::default()),
        }
    }

    /// The driver whose peer access this is.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// Lets `accessor` reach memory on `owner` (the probe's test copy, a
    /// verified verdict). A direction already enabled here is not asked again.
    pub fn enable(&self, accessor: usize, owner: usize) -> Result<()> {
        if accessor == owner {
            return Ok(());
        }
        let mut state = self.lock();
        if state.enabled.contains(&(accessor, owner)) {
            return Ok(());
        }
        self.driver.enable_peer_access(accessor, owner)?;
        state.disabled.remove(&(accessor, owner));
        state.enabled.insert((accessor, owner));
        Ok(())
    }

    /// Stops `accessor` reaching memory on `owner`, so that copies between
    /// them are staged by the driver. Asks the driver even for a direction
    /// this value never enabled (other code may have), but only once.
    ///
    /// A failed call is tried once more before the error is returned: a
    /// direction found broken and left open is the one outcome that gives
    /// other code in the process wrong bytes.
    pub fn disable(&self, accessor: usize, owner: usize) -> Result<()> {
        if accessor == owner {
            return Ok(());
        }
        let mut state = self.lock();
        if state.disabled.contains(&(accessor, owner)) {
            return Ok(());
        }
        if let Err(err) = self.driver.disable_peer_access(accessor, owner) {
            tracing::debug!("disabling peer access cuda:{accessor} -> cuda:{owner} failed ({err}); trying once more");
            self.driver.disable_peer_access(accessor, owner)?;
        }
        state.enabled.remove(&(accessor, owner));
        state.disabled.insert((accessor, owner));
        Ok(())
    }

    /// Makes the driver's state match `verdict`: its direction enabled when
    /// verified, disabled otherwise. A pair the driver does not claim cannot
    /// have been enabled by anyone, so it is left alone (closing it would
    /// create a context for nothing).
    pub fn apply(&self, verdict: &PeerVerdict) -> Result<()> {
        match verdict.reason {
            Reason::Verified => self.enable(verdict.from, verdict.to),
            Reason::NotClaimed => Ok(()),
            _ => self.disable(verdict.from, verdict.to),
        }
    }

    /// Lets `accessor` read and write memory of `pool` (needed for direct
    /// copies of stream-ordered pool memory). Each grant is made once.
    pub fn grant_pool(&self, pool: PoolId, accessor: usize) -> Result<()> {
        let mut state = self.lock();
        if state.pools.contains(&(pool, accessor)) {
            return Ok(());
        }
        self.driver.grant_pool_access(pool, accessor)?;
        state.pools.insert((pool, accessor));
        Ok(())
    }

    /// Whether `accessor -> owner` is enabled through this value.
    pub fn is_enabled(&self, accessor: usize, owner: usize) -> bool {
        self.lock().enabled.contains(&(accessor, owner))
    }

    /// Every direction enabled through this value, in order.
    pub fn enabled(&self) -> Vec<(usize, usize)> {
        self.lock().enabled.iter().copied().collect()
    }

    /// Every direction disabled through this value, in order.
    pub fn disabled(&self) -> Vec<(usize, usize)> {
        self.lock().disabled.iter().copied().collect()
    }

    /// Whether `accessor` was granted access to `pool` through this value.
    pub fn is_granted(&self, pool: PoolId, accessor: usize) -> bool {
        self.lock().pools.contains(&(pool, accessor))
    }

    fn lock(&self) -> MutexGuard<'_, AccessState> {
        // Every update happens after its driver call succeeded, so the sets
        // are consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for PeerAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("PeerAccess")
            .field("enabled", &state.enabled)
            .field("disabled", &state.disabled)
            .field("pools", &state.pools.len())
            .finish_non_exhaustive()
    }
}
