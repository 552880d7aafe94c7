//! The mover's copy streams, one in and one out per device, made on first
//! use and retired (replaced) after a hang so later moves never queue
//! behind it.

use std::sync::{Arc, Mutex};

use p2p_core::memory::Stream;
use p2p_core::{Driver, InvalidDevice, Result, StreamId};

/// Per device: the stream for copies that read it and the one for copies
/// that write it.
#[derive(Debug)]
pub(crate) struct CopyStreams {
    driver: Arc<dyn Driver>,
    /// `[outbound, inbound]` per device; `None` until first use or after retiring.
    slots: Mutex<Vec<[Option<Stream>; 2]>>,
    /// Streams with hung work on them: kept, never destroyed.
    retired: Mutex<Vec<Stream>>,
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

    /// Takes `stream` out of use if it is one of ours: later moves get a new
    /// one. The old one is kept (never destroyed) with its hung work.
    pub(crate) fn retire(&self, stream: StreamId) {
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
