//! The batch rows with peer copy broken: 256 tensors of 16 KiB staged
//! through host memory in one `copy_batch`, against moving them one by one
//! as ExLlamaV2 does, as sequential staging does, and as separate moves.

use p2p_core::Location;
use p2p_move::{Mover, Route};

use super::batch_buffers::{copy_batch, copy_each, BatchBuffers};
use super::{Bench, BenchResult, Measured, BATCH_COUNT, BATCH_ITEM_BYTES, DST, SRC};
use crate::raw_baselines as raw;
use crate::report::Target;
use crate::timing::measure;

impl Bench {
    /// `mover` must stage cuda:0 -> cuda:1 (peer copy disabled, or not claimed).
    pub(super) fn staged_batch(&mut self, mover: &Mover) -> BenchResult<()> {
        let planned = mover.plan(Location::Cuda(SRC), Location::Cuda(DST), BATCH_ITEM_BYTES)?;
        if planned.route != Route::Staged {
            return Err(format!(
                "expected a staged plan for the batch, got {}",
                planned.route
            )
            .into());
        }
        let driver = self.driver.clone();
        let mut buffers = BatchBuffers::new(&driver, SRC, DST, &self.streams[SRC])?;
        let label = format!("batch, peer broken: copy_batch of {BATCH_COUNT}");
        let check = buffers.check(driver.as_ref(), &self.streams[DST], &label, |srcs, dsts| {
            Ok(copy_batch(mover, srcs, dsts)?)
        })?;
        let correct = self.push_check(check);

        let reps = self.reps(BATCH_ITEM_BYTES);
        let BatchBuffers { srcs, dsts } = &mut buffers;
        let (src_stream, dst_stream) = (&self.streams[SRC], &self.streams[DST]);
        let ours = measure(reps, || copy_batch(mover, srcs, dsts))?.median();
        let separate = measure(reps, || copy_each(mover, srcs, dsts))?.median();
        let host = &mut self.pageable[..BATCH_ITEM_BYTES];
        let exllama = measure(reps, || {
            srcs.iter().zip(dsts.iter_mut()).try_for_each(|(src, dst)| {
                raw::pageable_round_trip(
                    driver.as_ref(),
                    dst,
                    src,
                    host,
                    BATCH_ITEM_BYTES,
                    src_stream,
                    dst_stream,
                )
            })
        })?
        .median();
        let pinned = &mut self.pinned;
        let sequential = measure(reps, || {
            srcs.iter().zip(dsts.iter_mut()).try_for_each(|(src, dst)| {
                raw::sequential_staging(
                    driver.as_ref(),
                    dst,
                    src,
                    pinned,
                    BATCH_ITEM_BYTES,
                    src_stream,
                    dst_stream,
                )
            })
        })?
        .median();
        let baselines = [
            (
                exllama,
                format!(
                    "ExLlamaV2 fallback per tensor, raw: {BATCH_COUNT} × (D2H to pageable, sync, H2D, sync)"
                ),
                Some(Target::speed(8.0, "ExLlamaV2 per tensor")),
            ),
            (
                sequential,
                format!(
                    "sequential staging per tensor, raw: {BATCH_COUNT} × (D2H to pinned, sync, H2D, sync)"
                ),
                None,
            ),
            (
                separate,
                format!("{BATCH_COUNT} separate blocking Mover::copy (staged)"),
                None,
            ),
        ];
        self.push_rows(&Measured::batch(&label, ours, correct), baselines);
        Ok(())
    }
}
