//! The batched device-to-device rows: 256 tensors of 16 KiB across a
//! verified peer pair (or between buffers of one GPU) by `Mover::copy_batch`,
//! against separate copies and against what the driver offers for batches:
//! `cuMemcpyBatchAsync` with each source access order and flag, and a batch
//! split across two streams. Every option's figure goes into one table.

use p2p_core::memory::Stream;
use p2p_move::Mover;

use super::batch_buffers::{copy_batch, copy_each, BatchBuffers};
use super::{pair_name, BatchOption, Bench, BenchResult, Measured, BATCH_COUNT, BATCH_ITEM_BYTES};
use crate::raw_baselines as raw;
use crate::raw_batch::{BatchAttributes, RawBatch, SrcOrder};
use crate::report::Target;
use crate::timing::measure;

/// The raw batch calls measured: attributes, and how many streams the batch is split across.
const RAW_OPTIONS: [(SrcOrder, bool, usize); 6] = [
    (SrcOrder::Stream, false, 1),
    (SrcOrder::Any, false, 1),
    (SrcOrder::Stream, true, 1),
    (SrcOrder::Any, true, 1),
    (SrcOrder::Stream, false, 2),
    (SrcOrder::Any, false, 2),
];

impl Bench {
    /// `src` -> `dst` (cuda:0 -> cuda:1 on a verified pair, cuda:0 -> cuda:0 on one GPU).
    pub(super) fn batch(&mut self, mover: &Mover, src: usize, dst: usize) -> BenchResult<()> {
        let driver = self.driver.clone();
        let pair = pair_name(src, dst);
        let mut buffers = BatchBuffers::new(&driver, src, dst, &self.streams[src])?;
        let label = format!("batch, {pair}: copy_batch of {BATCH_COUNT}");
        let check = buffers.check(driver.as_ref(), &self.streams[dst], &label, |srcs, dsts| {
            Ok(copy_batch(mover, srcs, dsts)?)
        })?;
        let correct = self.push_check(check);

        let reps = self.reps(BATCH_ITEM_BYTES);
        let stream = &self.streams[src];
        let second = Stream::new(&driver, src)?;
        let (srcs, dsts) = (&buffers.srcs, &mut buffers.dsts);
        let ours = measure(reps, || copy_batch(mover, srcs, dsts))?.median();
        let separate = measure(reps, || copy_each(mover, srcs, dsts))?.median();
        let raw_each = measure(reps, || {
            srcs.iter().zip(dsts.iter_mut()).try_for_each(|(s, d)| {
                raw::peer_copy(driver.as_ref(), d, s, BATCH_ITEM_BYTES, stream)
            })
        })?
        .median();
        let raw_one_sync = measure(reps, || {
            raw::peer_copies_one_sync(driver.as_ref(), dsts, srcs, stream)
        })?
        .median();
        let raw_driver = measure(reps, || {
            raw::batch_copy(driver.as_ref(), dsts, srcs, stream)
        })?
        .median();
        let copy_call = if src == dst {
            "cuMemcpyAsync"
        } else {
            "cuMemcpyPeerAsync"
        };
        let mut options = vec![
            (
                format!("our copy_batch of {BATCH_COUNT}"),
                ours,
                Some(correct),
            ),
            (
                format!("{BATCH_COUNT} separate blocking Mover::copy"),
                separate,
                None,
            ),
            (
                format!("{BATCH_COUNT} × (raw {copy_call} + sync)"),
                raw_each,
                None,
            ),
            (
                format!("{BATCH_COUNT} raw {copy_call} + one sync"),
                raw_one_sync,
                None,
            ),
            (
                "Driver::copy_batch_async (the CUDA backend: srcAccessOrder = STREAM) + sync"
                    .to_string(),
                raw_driver,
                None,
            ),
        ];
        // The raw calls' bytes are checked too: an attribute the driver
        // takes but mishandles would otherwise show as a fast figure.
        let mut raw_checks = Vec::new();
        match &self.raw_batch {
            Ok(batch) => {
                let streams = [stream, &second];
                for (src_order, prefer_overlap, split) in RAW_OPTIONS {
                    let attributes = BatchAttributes {
                        src_order,
                        prefer_overlap,
                    };
                    let name = raw_label(batch, attributes, split);
                    let used = &streams[..split];
                    let check = buffers.check(
                        driver.as_ref(),
                        &self.streams[dst],
                        &name,
                        |srcs, dsts| Ok(batch.copy(dsts, srcs, used, attributes)?),
                    )?;
                    let (srcs, dsts) = (&buffers.srcs, &mut buffers.dsts);
                    let time = measure(reps, || batch.copy(dsts, srcs, used, attributes))?.median();
                    options.push((name, time, Some(check.passed())));
                    raw_checks.push(check);
                }
            }
            Err(why) => {
                let why = why.clone();
                self.note(format!(
                    "raw cuMemcpyBatchAsync options ({pair}) skipped: {why}"
                ));
            }
        }
        for check in raw_checks {
            self.push_check(check);
        }

        let peer = src != dst;
        let baselines = [
            (
                separate,
                format!("{BATCH_COUNT} separate blocking Mover::copy"),
                peer.then(|| Target::speed(10.0, "separate copies")),
            ),
            (
                raw_each,
                format!("{BATCH_COUNT} × (raw {copy_call} + sync)"),
                None,
            ),
            (
                raw_one_sync,
                format!("{BATCH_COUNT} raw {copy_call} + one sync"),
                None,
            ),
            (
                raw_driver,
                "raw Driver::copy_batch_async + one sync".to_string(),
                None,
            ),
        ];
        self.push_rows(&Measured::batch(&label, ours, correct), baselines);
        for (option, time, checked) in options {
            self.batch_options.push(BatchOption {
                option,
                pair: pair.clone(),
                time,
                checked,
            });
        }
        Ok(())
    }
}

/// `raw cuMemcpyBatchAsync, srcAccessOrder = ANY, flags = 0, 2 streams`.
fn raw_label(batch: &RawBatch, attributes: BatchAttributes, streams: usize) -> String {
    let split = if streams == 1 {
        "one call".to_string()
    } else {
        format!("split across {streams} streams")
    };
    format!(
        "raw {}, {}, {split}, + sync",
        batch.symbol(),
        attributes.label()
    )
}
