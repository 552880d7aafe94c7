//! Timing one copy with a pair of timing events on a stream, and the median, min and max of the timed runs.
//!
//! The events sit on a stream of their own. Raw driver copies are queued on
//! that stream between the two events, so the interval is the copy on the
//! GPU. A blocking move runs on the mover's streams while this one is idle,
//! so each event is stamped as it is recorded: the interval is what the
//! caller waited for, read from the GPU's clock (the virtual clock on the
//! simulator). Only these two events have timing; every other event the
//! bench makes is timing-free.

use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::{Event, Stream};
use p2p_core::Driver;

/// A stream with a start and an end timing event, on one device.
#[derive(Debug)]
pub(super) struct Clock {
    driver: Arc<dyn Driver>,
    stream: Stream,
    start: Event,
    end: Event,
}

impl Clock {
    pub(super) fn new(driver: &Arc<dyn Driver>, device: usize) -> p2p_core::Result<Clock> {
        Ok(Clock {
            driver: driver.clone(),
            stream: Stream::new(driver, device)?,
            start: Event::with_timing(driver, device)?,
            end: Event::with_timing(driver, device)?,
        })
    }

    /// Records the start event, runs `op` (given the stream and the start
    /// event, for other streams to wait on), records the end event, waits
    /// for it (at most `deadline`) and returns the milliseconds between them.
    pub(super) fn time<E>(
        &self,
        deadline: Duration,
        op: impl FnOnce(&Stream, &Event) -> Result<(), E>,
    ) -> Result<f64, E>
    where
        E: From<p2p_core::Error>,
    {
        self.start.record(&self.stream)?;
        op(&self.stream, &self.start)?;
        self.end.record(&self.stream)?;
        self.driver.wait_event(self.end.id(), deadline)?;
        let ms = self
            .driver
            .event_elapsed_ms(self.start.id(), self.end.id())?;
        Ok(f64::from(ms.max(0.0)))
    }
}

/// How long a timed copy of `bytes` may take before it counts as hung:
/// 10 s, plus the bytes at 50 MB/s (far below any real link).
pub(super) fn deadline_for(bytes: usize) -> Duration {
    Duration::from_secs(10) + Duration::from_secs_f64(bytes as f64 / 50e6)
}

/// The timed runs of one cell, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Runs {
    ms: Vec<f64>,
}

impl Runs {
    pub(super) fn push(&mut self, ms: f64) {
        self.ms.push(ms);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    /// The median run (the mean of the middle two for an even count).
    pub(super) fn median_ms(&self) -> Option<f64> {
        let sorted = self.sorted();
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }

    pub(super) fn min_ms(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    pub(super) fn max_ms(&self) -> Option<f64> {
        self.sorted().last().copied()
    }
}

/// What a cell shows for a run of `ms` moving `bytes`: decimal GB/s for
/// bandwidth cases, microseconds for latency cases.
pub(super) fn figure(latency: bool, bytes: usize, ms: f64) -> f64 {
    if latency {
        ms * 1000.0
    } else if ms > 0.0 {
        bytes as f64 / (ms / 1000.0) / 1e9
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let mut runs = Runs::default();
        assert_eq!(runs.median_ms(), None);
        for ms in [3.0, 1.0, 2.0, 10.0] {
            runs.push(ms);
        }
        assert_eq!(runs.median_ms(), Some(2.5));
        assert_eq!(runs.min_ms(), Some(1.0));
        assert_eq!(runs.max_ms(), Some(10.0));
        runs.push(0.5);
        assert_eq!(runs.median_ms(), Some(2.0));
    }

    #[test]
    fn figures_are_decimal_gigabytes_or_microseconds() {
        assert_eq!(figure(false, 1_000_000_000, 1000.0), 1.0);
        assert_eq!(figure(true, 4096, 0.0075), 7.5);
    }
}
