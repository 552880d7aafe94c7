//! Fences and parking: pooled events ([`EventPool`], [`Fence`]) and
//! [`Parked`], resources held until the fence that ends their use fires.
//!
//! Creating an event costs microseconds, which a small copy must not pay, so
//! events are pooled. A fence may go back to the pool before it has fired:
//! recording it again later does not disturb a `cuStreamWaitEvent` queued
//! earlier, which waits for the recording current at the time of the wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_core::{Driver, Error, EventId, InvalidDevice, Result, StreamId};

/// Timing-free events of every device, reused across moves.
#[derive(Debug)]
pub struct EventPool {
    driver: Arc<dyn Driver>,
    free: Vec<Mutex<Vec<EventId>>>,
}

impl EventPool {
    /// An empty pool for every device of `driver`.
    pub fn new(driver: Arc<dyn Driver>) -> Arc<EventPool> {
        let free = (0..driver.device_count())
            .map(|_| Mutex::new(Vec::new()))
            .collect();
        Arc::new(EventPool { driver, free })
    }

    /// A fence of `device`: a free event, or a new one.
    pub fn take(self: &Arc<Self>, device: usize) -> Result<Fence> {
        let slot = self.free.get(device).ok_or(InvalidDevice {
            side: None,
            ordinal: device,
            count: self.free.len(),
        })?;
        let reused = slot.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let id = match reused {
            Some(id) => id,
            None => self.driver.create_event(device)?,
        };
        Ok(Fence(Arc::new(Lease {
            pool: self.clone(),
            id,
            fired: AtomicBool::new(false),
        })))
    }

    /// A fence of `stream`'s device, recorded at the current end of `stream`.
    pub fn record(self: &Arc<Self>, stream: StreamId) -> Result<Fence> {
        let fence = self.take(stream.device)?;
        fence.record(stream)?;
        Ok(fence)
    }
}

impl Drop for EventPool {
    fn drop(&mut self) {
        for slot in &mut self.free {
            for id in slot.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
                // SAFETY: every id in a free list was created by this pool's
                // driver and is owned by the pool alone (leases give theirs
                // back when the last clone drops).
                if let Err(err) = unsafe { self.driver.destroy_event(id) } {
                    p2p_core::memory::record_drop_error(
                        format!("destroying a pooled event of cuda:{}", id.device),
                        err,
                    );
                }
            }
        }
    }
}

/// An event borrowed from an [`EventPool`]; it goes back when the last
/// clone drops. Clones share one recording: a move's completion and the
/// buffers parked behind it become free at the same moment.
///
/// Once a query or a wait has seen the recording fire, the fence remembers
/// it and later queries and waits make no driver call (a recording that has
/// fired stays fired until the event is recorded again, which only
/// [`Fence::record`] does while the fence is out of the pool).
#[derive(Clone, Debug)]
pub struct Fence(Arc<Lease>);

#[derive(Debug)]
struct Lease {
    pool: Arc<EventPool>,
    id: EventId,
    /// The current recording is known to have fired.
    fired: AtomicBool,
}

impl Fence {
    /// The event, for `stream_wait_event`.
    pub fn id(&self) -> EventId {
        self.0.id
    }

    /// Records the fence at the current end of `stream`.
    pub fn record(&self, stream: StreamId) -> Result<()> {
        self.0.fired.store(false, Ordering::Release);
        self.0.pool.driver.record_event(self.0.id, stream)
    }

    /// Whether the work before the fence is done. A failed query counts as
    /// not done: whatever is parked behind it stays parked.
    pub fn is_done(&self) -> bool {
        if self.0.fired.load(Ordering::Acquire) {
            return true;
        }
        let done = self.0.pool.driver.event_done(self.0.id).unwrap_or(false);
        if done {
            self.0.fired.store(true, Ordering::Release);
        }
        done
    }

    /// Whether a query or a wait has already seen the fence fire (no driver call).
    pub fn known_done(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    /// Blocks until the fence fires or `deadline` has passed.
    pub fn wait(&self, deadline: Duration) -> Result<()> {
        if self.0.fired.load(Ordering::Acquire) {
            return Ok(());
        }
        self.0.pool.driver.wait_event(self.0.id, deadline)?;
        self.0.fired.store(true, Ordering::Release);
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(slot) = self.pool.free.get(self.id.device) {
            slot.lock().unwrap_or_else(|e| e.into_inner()).push(self.id);
        }
    }
}

/// Resources that queued work may still use, each set held until its fence
/// fires, and the free ones ready for reuse.
///
/// Dropping waits for every set up to the drop deadline and leaks
/// (`std::mem::forget`) those whose fence did not fire: the device may still
/// touch them, and freeing would hand their memory to someone else.
#[derive(Debug)]
pub struct Parked<T> {
    free: Vec<T>,
    parked: VecDeque<(Vec<T>, Fence)>,
    drop_deadline: Duration,
}

impl<T> Parked<T> {
    /// Nothing parked; dropping waits up to `drop_deadline` per set.
    pub fn new(drop_deadline: Duration) -> Parked<T> {
        Parked {
            free: Vec::new(),
            parked: VecDeque::new(),
            drop_deadline,
        }
    }

    /// Holds `items` until `fence` fires.
    pub fn park(&mut self, items: Vec<T>, fence: Fence) {
        if !items.is_empty() {
            self.parked.push_back((items, fence));
        }
    }

    /// Adds items no queued work uses.
    pub fn put_free(&mut self, items: impl IntoIterator<Item = T>) {
        self.free.extend(items);
    }

    /// Moves every set whose fence has fired to the free list.
    pub fn reclaim(&mut self) {
        let mut i = 0;
        while i < self.parked.len() {
            if self.parked[i].1.is_done() {
                if let Some((items, _)) = self.parked.remove(i) {
                    self.free.extend(items);
                }
            } else {
                i += 1;
            }
        }
    }

    /// The free items, to take from or trim.
    pub fn free_mut(&mut self) -> &mut Vec<T> {
        &mut self.free
    }

    /// The free items.
    pub fn free(&self) -> &[T] {
        &self.free
    }

    /// Takes every free item.
    pub fn take_free(&mut self) -> Vec<T> {
        std::mem::take(&mut self.free)
    }

    /// The oldest parked set, taken out (to wait for without a lock held).
    pub fn take_oldest(&mut self) -> Option<(Vec<T>, Fence)> {
        self.parked.pop_front()
    }

    /// How many sets are parked.
    pub fn parked_len(&self) -> usize {
        self.parked.len()
    }

    /// Iterates the parked items.
    pub fn parked_items(&self) -> impl Iterator<Item = &T> {
        self.parked.iter().flat_map(|(items, _)| items.iter())
    }

    /// Waits for every parked set, each up to `deadline`: the items of those
    /// that fire become free, the others are leaked and counted in the
    /// returned [`Leaked`] (with the first error).
    pub fn wait_all(&mut self, deadline: Duration, mut leaking: impl FnMut(&T)) -> Leaked {
        let mut leaked = Leaked::default();
        while let Some((items, fence)) = self.parked.pop_front() {
            match fence.wait(deadline) {
                Ok(()) => self.free.extend(items),
                Err(err) => {
                    for item in &items {
                        leaking(item);
                    }
                    leaked.sets += 1;
                    leaked.first_error.get_or_insert(err);
                    std::mem::forget(items);
                }
            }
        }
        leaked
    }
}

/// What [`Parked::wait_all`] had to leak.
#[derive(Debug, Default)]
pub struct Leaked {
    /// Sets whose fence did not fire in time.
    pub sets: usize,
    /// Why the first of them did not.
    pub first_error: Option<Error>,
}

impl<T> Drop for Parked<T> {
    fn drop(&mut self) {
        let leaked = self.wait_all(self.drop_deadline, |_| {});
        if let Some(err) = leaked.first_error {
            tracing::error!(
                "{} parked set(s) still in use at drop ({err}); leaked rather than freed",
                leaked.sets
            );
        }
    }
}
