//! Peer rows: `cuMemAlloc` and pool memory, against raw `cuMemcpyPeerAsync`.

use p2p_core::memory::DeviceBuffer;
use p2p_core::AllocKind;
use p2p_move::{format_size, Mover, StreamOrder};

use super::{
    check_copy, check_len, move_prefix, peer_target, Bench, BenchResult, Measured, PoolPair, DST,
    SRC,
};
use crate::raw_baselines as raw;
use crate::raw_ranges::{DeviceRange, DeviceRangeMut};
use crate::report::{self, Row, Show};
use crate::timing::measure;

impl Bench {
    /// Raw peer copies of pool memory that no peer has been granted access
    /// to: the driver stages them. Must run before any mover copies pool memory.
    pub(super) fn raw_pool_ungranted(&mut self) -> BenchResult<Option<PoolPair>> {
        let max = self.max();
        let mut src = match DeviceBuffer::new(&self.driver, SRC, max, AllocKind::Pool) {
            Ok(buffer) => buffer,
            Err(p2p_core::Error::Unsupported(why)) => {
                self.note(format!("pool memory rows skipped: {why}"));
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        let mut dst = DeviceBuffer::new(&self.driver, DST, max, AllocKind::Pool)?;
        let (src_pool, dst_pool) = (
            self.driver.pool_of(src.ptr())?,
            self.driver.pool_of(dst.ptr())?,
        );
        if src_pool.is_none() || dst_pool.is_none() {
            self.note(
                "pool memory rows skipped: AllocKind::Pool memory is not from a pool here".into(),
            );
            return Ok(None);
        }
        src.write_from_slice(&self.pattern, &self.streams[SRC])?;
        for size in self.sizes.clone() {
            let timing = measure(self.reps(size), || {
                raw::peer_copy(
                    self.driver.as_ref(),
                    &mut dst,
                    &src,
                    size,
                    &self.streams[SRC],
                )
            })?;
            println!(
                "raw peer, pool memory, no grant  {:>13}  {}",
                format_size(size),
                report::figure(Show::for_size(size), size, timing.median())
            );
            self.baselines.entry(size).or_default().peer_pool_ungranted = Some(timing.median());
        }
        Ok(Some(PoolPair { src, dst }))
    }

    /// Our peer copy of `cuMemAlloc` memory against raw `cuMemcpyPeerAsync`:
    /// the blocking `Mover::copy`, and `copy_async` ordered before a stream
    /// that the caller synchronizes (which shows what the blocking wait
    /// costs). Only on a verified pair.
    pub(super) fn peer(&mut self, mover: &Mover) -> BenchResult<()> {
        let label = "peer (cuMemAlloc)";
        let len = check_len(self.max());
        let check = check_copy(
            self.driver.as_ref(),
            &self.streams[DST],
            label,
            &mut self.dst,
            &self.pattern[..len],
            |dst| move_prefix(mover, &self.src, dst, len),
        )?;
        let correct = self.push_check(check);
        for size in self.sizes.clone() {
            let reps = self.reps(size);
            let baseline = measure(reps, || {
                raw::peer_copy(
                    self.driver.as_ref(),
                    &mut self.dst,
                    &self.src,
                    size,
                    &self.streams[SRC],
                )
            })?
            .median();
            let ours =
                measure(reps, || move_prefix(mover, &self.src, &mut self.dst, size))?.median();
            // The same move, ordered before the caller's stream, which the
            // caller synchronizes: the wait is the driver's, not our polling.
            let ordered = measure(reps, || {
                let order = StreamOrder {
                    src_stream: None,
                    dst_stream: Some(self.streams[DST].id()),
                };
                let src = DeviceRange::new(&self.src, size);
                let mut dst = DeviceRangeMut::new(&mut self.dst, size);
                // SAFETY: the transfer is waited for below, not leaked.
                let transfer = unsafe { mover.copy_async(&src, &mut dst, order)? };
                self.streams[DST].synchronize()?;
                transfer.wait().map(drop)
            })?
            .median();
            self.baselines.entry(size).or_default().peer = Some(baseline);
            let variants = [
                (label, ours, peer_target(size)),
                ("peer, copy_async + stream sync", ordered, None),
            ];
            for (route, ours, target) in variants {
                self.push_row(Row {
                    route: route.into(),
                    size: format_size(size),
                    bytes: size,
                    ours,
                    baseline,
                    baseline_name: "raw cuMemcpyPeerAsync + sync".into(),
                    show: Show::for_size(size),
                    target,
                    correct,
                });
            }
        }
        Ok(())
    }

    /// Our peer copy of pool memory (which the mover grants access to)
    /// against raw copies of `cuMemAlloc` memory and of ungranted pool memory.
    pub(super) fn peer_pool(&mut self, mover: &Mover, pools: PoolPair) -> BenchResult<()> {
        let PoolPair { src, mut dst } = pools;
        let label = "peer (pool memory)";
        let len = check_len(self.max());
        let check = check_copy(
            self.driver.as_ref(),
            &self.streams[DST],
            label,
            &mut dst,
            &self.pattern[..len],
            |dst| move_prefix(mover, &src, dst, len),
        )?;
        let correct = self.push_check(check);
        for size in self.sizes.clone() {
            let ours =
                measure(self.reps(size), || move_prefix(mover, &src, &mut dst, size))?.median();
            let measured = self.baselines.get(&size).copied().unwrap_or_default();
            let baselines = [
                (
                    measured.peer,
                    "raw cuMemcpyPeerAsync + sync, cuMemAlloc memory",
                    peer_target(size),
                ),
                (
                    measured.peer_pool_ungranted,
                    "raw cuMemcpyPeerAsync + sync, pool memory, no grant",
                    None,
                ),
            ];
            self.push_rows(
                &Measured::sized(label, size, ours, correct),
                baselines
                    .into_iter()
                    .filter_map(|(baseline, name, target)| {
                        Some((baseline?, name.to_string(), target))
                    }),
            );
        }
        Ok(())
    }
}
