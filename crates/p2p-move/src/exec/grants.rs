//! Opening stream-ordered memory pools to peers, once per pool and device.
//!
//! Memory from a stream-ordered pool is not covered by peer access: without
//! a grant, the driver quietly stages it (38 vs 394 GB/s). A failed grant is
//! not fatal: such memory is still copied correctly, by the slower path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use p2p_core::{DeviceAddr, Driver, PoolId};

#[derive(Debug)]
pub(crate) struct PoolGrants {
    driver: Arc<dyn Driver>,
    /// (pool, device) pairs already asked for, so each is asked once.
    pools: Mutex<HashSet<(PoolId, usize)>>,
    /// Device pairs whose default pools were opened to each other.
    defaults: Mutex<HashSet<(usize, usize)>>,
}

impl PoolGrants {
    pub(crate) fn new(driver: Arc<dyn Driver>) -> PoolGrants {
        PoolGrants {
            driver,
            pools: Mutex::new(HashSet::new()),
            defaults: Mutex::new(HashSet::new()),
        }
    }

    /// Opens the pools of `a` and `b` (their devices' default pools, and the
    /// pools the addresses come from) to the other device.
    pub(crate) fn open(&self, a: DeviceAddr, b: DeviceAddr) {
        if a.device == b.device {
            return;
        }
        self.open_defaults(a.device, b.device);
        for (addr, other) in [(a, b.device), (b, a.device)] {
            match self.driver.pool_of(addr) {
                Ok(Some(pool)) => self.grant(pool, other),
                Ok(None) => {}
                Err(err) => tracing::warn!(
                    "finding the pool of an address on cuda:{}: {err}",
                    addr.device
                ),
            }
        }
    }

    /// Opens the default pools of `a` and `b` to each other, once per pair.
    /// Batches rely on this alone (no per-address lookup).
    pub(crate) fn open_defaults(&self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let key = (a.min(b), a.max(b));
        if !self
            .defaults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
        {
            return;
        }
        for (owner, accessor) in [(a, b), (b, a)] {
            match self.driver.default_pool(owner) {
                Ok(Some(pool)) => self.grant(pool, accessor),
                Ok(None) => {}
                Err(err) => tracing::warn!("finding cuda:{owner}'s default pool: {err}"),
            }
        }
    }

    fn grant(&self, pool: PoolId, accessor: usize) {
        if !self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((pool, accessor))
        {
            return;
        }
        if let Err(err) = self.driver.grant_pool_access(pool, accessor) {
            tracing::warn!(
                "opening a pool of cuda:{} to cuda:{accessor}: {err}",
                pool.device
            );
        }
    }
}
