//! The staged crossover rows: small staged moves with the policy's
//! crossover between host relay and event chaining (`host_relay_bytes`)
//! forced to each extreme, against sequential staging, next to the default
//! policy, so that one run shows where one way overtakes the other.

use p2p_core::Location;
use p2p_move::{Layout, Mover, Policy, Route};

use super::{check_copy, move_prefix, Bench, BenchResult, Crossover, Measured, DST, SRC};
use crate::raw_baselines as raw;
use crate::timing::measure;

/// Sizes around the default crossover (1 MiB).
const CROSSOVER_SIZES: [usize; 5] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];

/// The two extremes: every staged move chained on the GPUs by events, or
/// every one relayed by the host.
const EXTREMES: [(usize, &str); 2] = [
    (0, "staged, event chaining forced (host_relay_bytes = 0)"),
    (
        usize::MAX,
        "staged, host relay forced (host_relay_bytes = MAX)",
    ),
];

impl Bench {
    /// `staged` stages cuda:0 -> cuda:1 (peer copy disabled or not claimed)
    /// with the default policy; the extremes use its peer table.
    pub(super) fn crossover(&mut self, staged: &Mover) -> BenchResult<()> {
        let sizes: Vec<usize> = CROSSOVER_SIZES
            .into_iter()
            .filter(|&size| size <= self.max())
            .collect();
        let Some(&largest) = sizes.last() else {
            return Ok(());
        };
        let mut movers = Vec::new();
        for (host_relay_bytes, label) in EXTREMES {
            let policy = Policy {
                host_relay_bytes,
                ..staged.policy().clone()
            };
            let mover = Mover::new(staged.table().clone(), policy)?;
            // Forced means forced: the plan must say so at every size.
            for &size in &sizes {
                let plan = mover.plan(Location::Cuda(SRC), Location::Cuda(DST), size)?;
                let relayed = plan.layout == Layout::HostRelay;
                if plan.route != Route::Staged || relayed != (host_relay_bytes == usize::MAX) {
                    return Err(format!("{label}: {size} bytes planned as {plan:?}").into());
                }
            }
            // Odd and a little short of the largest size: an overrun shows.
            let len = largest - 3;
            let check = check_copy(
                self.driver.as_ref(),
                &self.streams[DST],
                label,
                &mut self.dst,
                &self.pattern[..len],
                |dst| move_prefix(&mover, &self.src, dst, len),
            )?;
            let correct = self.push_check(check);
            movers.push((mover, label, correct));
        }
        let default_relay_bytes = staged.policy().host_relay_bytes;
        for size in sizes {
            let reps = self.reps(size);
            let driver = self.driver.as_ref();
            let (src_stream, dst_stream) = (&self.streams[SRC], &self.streams[DST]);
            let sequential = measure(reps, || {
                raw::sequential_staging(
                    driver,
                    &mut self.dst,
                    &self.src,
                    &mut self.pinned,
                    size,
                    src_stream,
                    dst_stream,
                )
            })?
            .median();
            let mut times = Vec::new();
            for (mover, _, _) in &movers {
                let time = measure(reps, || move_prefix(mover, &self.src, &mut self.dst, size))?;
                times.push(time.median());
            }
            let default =
                measure(reps, || move_prefix(staged, &self.src, &mut self.dst, size))?.median();
            for ((_, label, correct), &time) in movers.iter().zip(&times) {
                self.push_rows(
                    &Measured::sized(label, size, time, *correct),
                    [(
                        sequential,
                        "sequential staging: D2H, sync, H2D, sync".to_string(),
                        None,
                    )],
                );
            }
            self.crossovers.push(Crossover {
                size,
                chained: times[0],
                relayed: times[1],
                default,
                default_relay_bytes,
                sequential,
            });
        }
        Ok(())
    }
}
