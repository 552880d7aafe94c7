//! Reusable events and per-device copy streams, so a move creates neither.
//!
//! Creating an event or a stream costs microseconds and, for streams,
//! serialises with other driver work; a small copy must not pay that. A
//! pooled event may go back to the pool before it has fired: re-recording it
//! later does not disturb a `cuStreamWaitEvent` queued earlier, which waits for
//! the recording current at the time of the wait.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use p2p_core::memory::Stream;
use p2p_core::{Driver, Error, EventId, Result, StreamId};

/// Free events of one device.
#[derive(Debug)]
pub(crate) struct EventPool {
    driver: Arc<dyn Driver>,
    device: usize,
    free: Mutex<Vec<EventId>>,
}

impl EventPool {
    pub(crate) fn take(self: &Arc<Self>) -> Result<PooledEvent> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let id = match reused {
            Some(id) => id,
            None => self.driver.create_event(self.device)?,
        };
        Ok(PooledEvent(Arc::new(EventLease {
            pool: self.clone(),
            id,
        })))
    }
}

impl Drop for EventPool {
    fn drop(&mut self) {
        for id in self
            .free
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            // SAFETY: every id in the free list was created by this pool's
            // driver and is owned by the pool alone.
            if let Err(err) = unsafe { self.driver.destroy_event(id) } {
                tracing::warn!("destroying a pooled event: {err}");
            }
        }
    }
}

/// An event borrowed from a pool; goes back when the last clone is dropped.
/// Clones share one recording: a move's completion and the buffers parked
/// behind it become free at the same moment.
#[derive(Clone, Debug)]
pub(crate) struct PooledEvent(Arc<EventLease>);

#[derive(Debug)]
struct EventLease {
    pool: Arc<EventPool>,
    id: EventId,
}

impl PooledEvent {
    pub(crate) fn id(&self) -> EventId {
        self.0.id
    }

    pub(crate) fn record(&self, stream: StreamId) -> Result<()> {
        self.0.pool.driver.record_event(self.0.id, stream)
    }

    /// Done. A failed query counts as not done: buffers parked behind it are
    /// never handed out again (the pool pins past its bound instead).
    pub(crate) fn is_done(&self) -> bool {
        self.0.pool.driver.event_done(self.0.id).unwrap_or(false)
    }

    pub(crate) fn wait(&self, deadline: Duration) -> Result<()> {
        self.0.pool.driver.wait_event(self.0.id, deadline)
    }
}

impl Drop for EventLease {
    fn drop(&mut self) {
        self.pool
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.id);
    }
}

/// Frees buffers parked behind events once their copies are done; the
/// buffers of a copy that does not finish within a minute are leaked, since
/// the device may still write them. For pools being dropped.
pub(crate) fn release_parked<B>(parked: Vec<(Vec<B>, PooledEvent)>, what: &str) {
    for (buffers, event) in parked {
        if let Err(err) = event.wait(Duration::from_secs(60)) {
            tracing::warn!("a {what} did not finish ({err}); leaking its buffers");
            std::mem::forget(buffers);
        }
    }
}

/// Per device: a pool of events and two copy streams, made on first use.
#[derive(Debug)]
pub(crate) struct DeviceResources {
    driver: Arc<dyn Driver>,
    events: Vec<Arc<EventPool>>,
    /// Stream for copies that read this device (peer out, device-to-host).
    outbound: Vec<OnceLock<Stream>>,
    /// Stream for copies that write this device (host-to-device, second legs).
    inbound: Vec<OnceLock<Stream>>,
    /// Serialises stream creation (OnceLock has no fallible init on stable).
    creating: Mutex<()>,
}

impl DeviceResources {
    pub(crate) fn new(driver: Arc<dyn Driver>) -> DeviceResources {
        let n = driver.device_count();
        DeviceResources {
            events: (0..n)
                .map(|device| {
                    Arc::new(EventPool {
                        driver: driver.clone(),
                        device,
                        free: Mutex::new(Vec::new()),
                    })
                })
                .collect(),
            outbound: (0..n).map(|_| OnceLock::new()).collect(),
            inbound: (0..n).map(|_| OnceLock::new()).collect(),
            creating: Mutex::new(()),
            driver,
        }
    }

    pub(crate) fn event(&self, device: usize) -> Result<PooledEvent> {
        self.pool(device)?.take()
    }

    fn pool(&self, device: usize) -> Result<&Arc<EventPool>> {
        self.events.get(device).ok_or(Error::InvalidDevice {
            ordinal: device,
            count: self.events.len(),
        })
    }

    pub(crate) fn outbound(&self, device: usize) -> Result<StreamId> {
        self.stream(&self.outbound, device)
    }

    pub(crate) fn inbound(&self, device: usize) -> Result<StreamId> {
        self.stream(&self.inbound, device)
    }

    fn stream(&self, slots: &[OnceLock<Stream>], device: usize) -> Result<StreamId> {
        let slot = slots.get(device).ok_or(Error::InvalidDevice {
            ordinal: device,
            count: slots.len(),
        })?;
        if let Some(stream) = slot.get() {
            return Ok(stream.id());
        }
        let _creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stream) = slot.get() {
            return Ok(stream.id());
        }
        let stream = Stream::new(&self.driver, device)?;
        Ok(slot.get_or_init(|| stream).id())
    }
}
