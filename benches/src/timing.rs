//! Host-side timing of complete operations: warm-up, then the median of N reps.
//!
//! Every timed operation must end with its bytes in place (a blocking call or
//! a stream synchronize), so the host clock measures what a caller waits for.

use std::time::{Duration, Instant};

/// How many untimed and timed repetitions to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reps {
    /// Untimed runs first: first-touch costs, lazy resources, clocks ramping up.
    pub warmup: usize,
    /// Timed runs; the median is reported.
    pub timed: usize,
}

/// Copies of at least this size get fewer reps: each one takes milliseconds.
pub const LARGE_COPY_BYTES: usize = 256 << 20;

impl Reps {
    /// About 20 timed reps for small copies, 5 from [`LARGE_COPY_BYTES`] up;
    /// `quick` cuts both to a smoke test's worth.
    pub fn for_size(bytes: usize, quick: bool) -> Reps {
        match (bytes >= LARGE_COPY_BYTES, quick) {
            (false, false) => Reps {
                warmup: 3,
                timed: 20,
            },
            (true, false) => Reps {
                warmup: 1,
                timed: 5,
            },
            (false, true) => Reps {
                warmup: 1,
                timed: 5,
            },
            (true, true) => Reps {
                warmup: 1,
                timed: 3,
            },
        }
    }
}

/// The timed runs of one operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Every timed run, sorted from fastest to slowest.
    pub runs: Vec<Duration>,
}

impl Timing {
    /// The median run (the mean of the middle two for an even count).
    pub fn median(&self) -> Duration {
        let n = self.runs.len();
        match n {
            0 => Duration::ZERO,
            _ if n % 2 == 1 => self.runs[n / 2],
            _ => (self.runs[n / 2 - 1] + self.runs[n / 2]) / 2,
        }
    }

    /// The fastest run.
    pub fn min(&self) -> Duration {
        self.runs.first().copied().unwrap_or(Duration::ZERO)
    }
}

/// Runs `op` `reps.warmup` times untimed, then `reps.timed` times under the
/// host clock. The first error stops the measurement and is returned.
pub fn measure<E>(reps: Reps, mut op: impl FnMut() -> Result<(), E>) -> Result<Timing, E> {
    for _ in 0..reps.warmup {
        op()?;
    }
    let mut runs = Vec::with_capacity(reps.timed);
    for _ in 0..reps.timed.max(1) {
        let start = Instant::now();
        op()?;
        runs.push(start.elapsed());
    }
    runs.sort();
    Ok(Timing { runs })
}

/// Decimal gigabytes per second (1 GB = 10^9 bytes, as BENCHMARKS.md reports).
pub fn gbps(bytes: usize, time: Duration) -> f64 {
    let seconds = time.as_secs_f64();
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e9
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(
            Timing {
                runs: vec![ms(1), ms(2), ms(9)]
            }
            .median(),
            ms(2)
        );
        assert_eq!(
            Timing {
                runs: vec![ms(1), ms(3), ms(5), ms(9)]
            }
            .median(),
            ms(4)
        );
        assert_eq!(Timing { runs: vec![] }.median(), Duration::ZERO);
    }

    #[test]
    fn measure_runs_warmup_and_timed_reps() {
        let mut calls = 0;
        let timing = measure(
            Reps {
                warmup: 2,
                timed: 5,
            },
            || {
                calls += 1;
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        assert_eq!(calls, 7);
        assert_eq!(timing.runs.len(), 5);
        assert!(timing.runs.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn measure_stops_at_the_first_error() {
        let mut calls = 0;
        let result = measure(
            Reps {
                warmup: 1,
                timed: 5,
            },
            || {
                calls += 1;
                if calls == 3 {
                    Err("boom")
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(result, Err("boom"));
        assert_eq!(calls, 3);
    }

    #[test]
    fn gigabytes_are_decimal() {
        assert!((gbps(1_000_000_000, Duration::from_secs(2)) - 0.5).abs() < 1e-12);
    }
}
