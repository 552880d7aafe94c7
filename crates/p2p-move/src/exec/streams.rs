//! The mover's copy streams, one in and one out per device, made on first
//! use and retired (replaced) after a hang so later moves never queue
//! behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use p2p_core::memory::Stream;
use p2p_core::{Driver, InvalidDevice, Result, StreamId};

use super::parking::Fence;

/// Per device: the stream for copies that read it and the one for copies
/// that write it.
#[derive(Debug)]
pub(crate) struct CopyStreams {
    driver: Arc<dyn Driver>,
    /// `[outbound, inbound]` per device; `None` until first use or after retiring.
    slots: Mutex<Vec<[Option<Stream>; 2]>>,
    /// Streams with hung work on them: kept, never destroyed.
    retired: Mutex<Vec<Stream>>,
    /// The fence that ended the last move's work on each stream, so the
    /// next move knows without an event of its own whether anything is
    /// queued ahead of it. Approximate under concurrency (another thread may
    /// queue between a move's look and its first op), as any fence recorded
    /// before a move's first op would be; only deadlines depend on it.
    ends: Mutex<HashMap<StreamId, Fence>>,
}

/// Which of a device's two streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Copies that read the device (peer out, device-to-host).
    Outbound = 0,
    /// Copies that write the device (host-to-device, second legs of staging).
    Inbound = 1,
}

impl CopyStreams {
    pub(crate) fn new(driver: Arc<dyn Driver>) -> CopyStreams {
        let n = driver.device_count();
        CopyStreams {
            slots: Mutex::new((0..n).map(|_| [None, None]).collect()),
            retired: Mutex::new(Vec::new()),
            ends: Mutex::new(HashMap::new()),
            driver,
        }
    }

    /// The stream of `device` in `direction`, created if there is none.
    pub(crate) fn get(&self, device: usize, direction: Direction) -> Result<StreamId> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let count = slots.len();
        let pair = slots.get_mut(device).ok_or(InvalidDevice {
            side: None,
            ordinal: device,
            count,
        })?;
        let slot = &mut pair[direction as usize];
        if let Some(stream) = slot {
            return Ok(stream.id());
        }
        let stream = Stream::new(&self.driver, device)?;
        let id = stream.id();
        *slot = Some(stream);
        Ok(id)
    }

    /// The fence that ended the last move's work on `stream`, if known.
    pub(crate) fn end_of(&self, stream: StreamId) -> Option<Fence> {
        let ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get(&stream).cloned()
    }

    /// `fence` ends the latest move's work on `stream`.
    pub(crate) fn set_end(&self, stream: StreamId, fence: Fence) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.insert(stream, fence);
    }

    /// Takes `stream` out of use if it is one of ours: later moves get a new
    /// one. The old one is kept (never destroyed) with its hung work.
    pub(crate) fn retire(&self, stream: StreamId) {
        self.ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stream);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for pair in slots.iter_mut() {
            for slot in pair.iter_mut() {
                if slot.as_ref().is_some_and(|s| s.id() == stream) {
                    if let Some(old) = slot.take() {
                        tracing::warn!(
                            "retiring a copy stream of cuda:{} after a hang",
                            stream.device
                        );
                        self.retired
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(old);
                    }
                }
            }
        }
    }

    /// How many streams have been retired (for tests and reports).
    pub(crate) fn retired_count(&self) -> usize {
        self.retired.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for CopyStreams {
    fn drop(&mut self) {
        // Hung work may still run on a retired stream: leak it.
        for stream in self
            .retired
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = stream.leak();
        }
    }
}
