//! The buffers of a batch (many small tensors, each with its own pattern,
//! and their destinations) and the check that every tensor arrived.

use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::{AllocKind, Driver};
use p2p_move::Mover;

use super::{BenchResult, BATCH_COUNT, BATCH_ITEM_BYTES, POISON};
use crate::pattern;
use crate::raw_baselines as raw;
use crate::report::Check;

/// `BATCH_COUNT` sources of `BATCH_ITEM_BYTES` on one device, as many
/// destinations on another (or the same) device.
pub(super) struct BatchBuffers {
    pub(super) srcs: Vec<DeviceBuffer>,
    pub(super) dsts: Vec<DeviceBuffer>,
}

/// What tensor `index` of a batch holds.
fn expected(index: usize) -> Vec<u8> {
    pattern::pattern(BATCH_ITEM_BYTES, 1000 + index as u64)
}

impl BatchBuffers {
    /// Sources on `src` filled with their patterns (through `src_stream`), destinations on `dst`.
    pub(super) fn new(
        driver: &Arc<dyn Driver>,
        src: usize,
        dst: usize,
        src_stream: &Stream,
    ) -> BenchResult<BatchBuffers> {
        let mut srcs = Vec::with_capacity(BATCH_COUNT);
        let mut dsts = Vec::with_capacity(BATCH_COUNT);
        for index in 0..BATCH_COUNT {
            let mut buffer = DeviceBuffer::new(driver, src, BATCH_ITEM_BYTES, AllocKind::Plain)?;
            buffer.write_from_slice(&expected(index), src_stream)?;
            srcs.push(buffer);
            dsts.push(DeviceBuffer::new(
                driver,
                dst,
                BATCH_ITEM_BYTES,
                AllocKind::Plain,
            )?);
        }
        Ok(BatchBuffers { srcs, dsts })
    }

    /// Poisons every destination, has `copy` move the batch, then reads
    /// every destination back through `dst_stream` and compares it.
    pub(super) fn check(
        &mut self,
        driver: &dyn Driver,
        dst_stream: &Stream,
        route: &str,
        copy: impl FnOnce(&[DeviceBuffer], &mut [DeviceBuffer]) -> BenchResult<()>,
    ) -> BenchResult<Check> {
        for dst in &mut self.dsts {
            raw::poison(driver, dst, POISON, dst_stream)?;
        }
        copy(&self.srcs, &mut self.dsts)?;
        let mut problem = None;
        for (index, dst) in self.dsts.iter().enumerate() {
            let found = dst.read_to_vec(dst_stream)?;
            if let Some(wrong) = pattern::check_copy(&found, &expected(index), POISON) {
                problem = Some(format!("tensor {index}: {wrong}"));
                break;
            }
        }
        Ok(Check {
            route: route.to_string(),
            bytes: BATCH_COUNT * BATCH_ITEM_BYTES,
            problem,
        })
    }
}

/// Our batch move of `srcs[i] -> dsts[i]`.
pub(super) fn copy_batch(
    mover: &Mover,
    srcs: &[DeviceBuffer],
    dsts: &mut [DeviceBuffer],
) -> p2p_move::Result<()> {
    mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).map(drop)
}

/// The same tensors as separate blocking moves.
pub(super) fn copy_each(
    mover: &Mover,
    srcs: &[DeviceBuffer],
    dsts: &mut [DeviceBuffer],
) -> p2p_move::Result<()> {
    srcs.iter()
        .zip(dsts.iter_mut())
        .try_for_each(|(src, dst)| mover.copy(src, dst).map(drop))
}

/// The batch's size, for people: `256 × 16 KiB`.
pub(super) fn batch_size() -> String {
    format!(
        "{BATCH_COUNT} × {}",
        p2p_move::format_size(BATCH_ITEM_BYTES)
    )
}
