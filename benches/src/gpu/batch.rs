//! The batch rows: many small tensors across a peer pair in one call.

use p2p_core::memory::DeviceBuffer;
use p2p_core::AllocKind;
use p2p_move::{format_size, Mover};

use super::{copy_batch, Bench, BenchResult, BATCH_COUNT, BATCH_ITEM_BYTES, DST, POISON, SRC};
use crate::pattern;
use crate::raw_baselines as raw;
use crate::report::{Check, Row, Show, Target};
use crate::timing::measure;

impl Bench {
    /// 256 tensors of 16 KiB across a verified peer pair: `Mover::copy_batch`
    /// against separate blocking moves, separate raw copies, and one raw batch call.
    pub(super) fn batch(&mut self, mover: &Mover) -> BenchResult<()> {
        let driver = self.driver.clone();
        let mut srcs = Vec::with_capacity(BATCH_COUNT);
        let mut dsts = Vec::with_capacity(BATCH_COUNT);
        for index in 0..BATCH_COUNT {
            let mut src = DeviceBuffer::new(&driver, SRC, BATCH_ITEM_BYTES, AllocKind::Plain)?;
            src.write_from_slice(
                &pattern::pattern(BATCH_ITEM_BYTES, 1000 + index as u64),
                &self.streams[SRC],
            )?;
            srcs.push(src);
            dsts.push(DeviceBuffer::new(
                &driver,
                DST,
                BATCH_ITEM_BYTES,
                AllocKind::Plain,
            )?);
        }
        let label = format!("batch: copy_batch of {BATCH_COUNT}");
        let size = format!("{BATCH_COUNT} × {}", format_size(BATCH_ITEM_BYTES));

        for dst in &mut dsts {
            raw::poison(driver.as_ref(), dst, POISON, &self.streams[DST])?;
        }
        copy_batch(mover, &srcs, &mut dsts)?;
        let mut problem = None;
        for (index, dst) in dsts.iter().enumerate() {
            let expected = pattern::pattern(BATCH_ITEM_BYTES, 1000 + index as u64);
            if let Some(wrong) =
                pattern::check_copy(&dst.read_to_vec(&self.streams[DST])?, &expected, POISON)
            {
                problem = Some(format!("tensor {index}: {wrong}"));
                break;
            }
        }
        let check = Check {
            route: label.clone(),
            bytes: BATCH_COUNT * BATCH_ITEM_BYTES,
            problem,
        };
        let correct = self.push_check(check);

        let reps = self.reps(BATCH_ITEM_BYTES);
        let src_stream = &self.streams[SRC];
        let ours = measure(reps, || copy_batch(mover, &srcs, &mut dsts))?.median();
        let separate = measure(reps, || {
            srcs.iter()
                .zip(&mut dsts)
                .try_for_each(|(src, dst)| mover.copy(src, dst).map(drop))
        })?
        .median();
        let raw_each = measure(reps, || {
            srcs.iter().zip(&mut dsts).try_for_each(|(src, dst)| {
                raw::peer_copy(driver.as_ref(), dst, src, BATCH_ITEM_BYTES, src_stream)
            })
        })?
        .median();
        let raw_batch = measure(reps, || {
            raw::batch_copy(driver.as_ref(), &mut dsts, &srcs, src_stream)
        })?
        .median();
        let baselines = [
            (
                separate,
                format!("{BATCH_COUNT} separate blocking Mover::copy"),
                Some(Target::speed(10.0, "separate copies")),
            ),
            (
                raw_each,
                format!("{BATCH_COUNT} × (raw cuMemcpyPeerAsync + sync)"),
                None,
            ),
            (
                raw_batch,
                "raw copy_batch_async + one sync".to_string(),
                None,
            ),
        ];
        for (baseline, name, target) in baselines {
            self.push_row(Row {
                route: label.clone(),
                size: size.clone(),
                bytes: BATCH_COUNT * BATCH_ITEM_BYTES,
                ours,
                baseline,
                baseline_name: name,
                show: Show::Time,
                target,
                correct,
            });
        }
        Ok(())
    }
}
