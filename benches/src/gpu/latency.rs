//! The non-blocking rows: a 4 KiB move queued with `copy_async` and a
//! `StreamOrder`, then a stream synchronize (or `Transfer::wait`), against
//! the raw copy and a synchronize. On one device this is a device-to-device
//! copy, which measures our CPU overhead per move; on a verified pair, the
//! peer copy.

use p2p_core::memory::DeviceBuffer;
use p2p_move::{Mover, StreamOrder};

use super::{check_copy, pair_name, Bench, BenchResult, SMALLEST, SRC};
use crate::raw_baselines as raw;
use crate::raw_ranges::{DeviceRange, DeviceRangeMut};
use crate::report::{Row, Show, Target};
use crate::timing::measure;

/// How a variant orders the move and waits for it.
#[derive(Clone, Copy, Debug)]
enum Variant {
    /// `dst_stream` in the order, then that stream synchronized (the
    /// framework's pattern: the caller's stream reads the result).
    DstStreamSync,
    /// Both caller streams in the order, then the destination's synchronized.
    BothStreamsSync,
    /// `dst_stream` in the order, then `Transfer::wait` alone.
    TransferWait,
    /// The blocking `Mover::copy`.
    Blocking,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::DstStreamSync,
        Variant::BothStreamsSync,
        Variant::TransferWait,
        Variant::Blocking,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::DstStreamSync => "copy_async (dst_stream) + stream sync",
            Variant::BothStreamsSync => "copy_async (src and dst streams) + stream sync",
            Variant::TransferWait => "copy_async (dst_stream) + Transfer::wait",
            Variant::Blocking => "blocking Mover::copy",
        }
    }
}

impl Bench {
    /// 4 KiB from `src` (cuda:0) to `dst` (cuda:0 for one device, cuda:1 for the peer pair).
    pub(super) fn non_blocking(
        &mut self,
        mover: &Mover,
        src: usize,
        dst: usize,
    ) -> BenchResult<()> {
        debug_assert_eq!(src, SRC, "the shared source lives on cuda:0");
        let size = SMALLEST;
        let pair = pair_name(src, dst);
        let check_label = format!(
            "non-blocking 4 KiB, {pair}: {}",
            Variant::DstStreamSync.label()
        );
        let driver = self.driver.clone();
        let reps = self.reps(size);
        let src_buffer = &self.src;
        let dst_buffer = if dst == SRC {
            &mut self.local_dst
        } else {
            &mut self.dst
        };
        let (src_stream, dst_stream) = (&self.streams[src], &self.streams[dst]);
        let check = check_copy(
            driver.as_ref(),
            dst_stream,
            &check_label,
            dst_buffer,
            &self.pattern[..size],
            |dst| {
                run(
                    mover,
                    Variant::DstStreamSync,
                    src_buffer,
                    dst,
                    size,
                    src_stream,
                    dst_stream,
                )
            },
        )?;
        let baseline = measure(reps, || {
            raw::peer_copy(driver.as_ref(), dst_buffer, src_buffer, size, src_stream)
        })?
        .median();
        let mut timings = Vec::new();
        for variant in Variant::ALL {
            let time = measure(reps, || {
                run(
                    mover, variant, src_buffer, dst_buffer, size, src_stream, dst_stream,
                )
            })?
            .median();
            timings.push((variant, time));
        }
        let correct = self.push_check(check);
        let baseline_name = if src == dst {
            "raw cuMemcpyAsync on one device + sync"
        } else {
            "raw cuMemcpyPeerAsync + sync"
        };
        for (variant, ours) in timings {
            let target =
                matches!(variant, Variant::DstStreamSync).then(|| Target::time_within(1.5, "raw"));
            self.push_row(Row {
                route: format!("non-blocking 4 KiB, {pair}: {}", variant.label()),
                size: p2p_move::format_size(size),
                bytes: size,
                ours,
                baseline,
                baseline_name: baseline_name.into(),
                show: Show::Time,
                target,
                correct,
            });
        }
        Ok(())
    }
}

/// One move of the first `len` bytes as `variant` does it; returns once the bytes are there.
fn run(
    mover: &Mover,
    variant: Variant,
    src: &DeviceBuffer,
    dst: &mut DeviceBuffer,
    len: usize,
    src_stream: &p2p_core::memory::Stream,
    dst_stream: &p2p_core::memory::Stream,
) -> p2p_move::Result<()> {
    let source = DeviceRange::new(src, len);
    let mut target = DeviceRangeMut::new(dst, len);
    let order = match variant {
        Variant::Blocking => return mover.copy(&source, &mut target).map(drop),
        Variant::DstStreamSync | Variant::TransferWait => StreamOrder {
            src_stream: None,
            dst_stream: Some(dst_stream.id()),
        },
        Variant::BothStreamsSync => StreamOrder {
            src_stream: Some(src_stream.id()),
            dst_stream: Some(dst_stream.id()),
        },
    };
    // SAFETY: the transfer is waited for below (or dropped on the error
    // path, which waits), never leaked.
    let transfer = unsafe { mover.copy_async(&source, &mut target, order)? };
    if !matches!(variant, Variant::TransferWait) {
        dst_stream.synchronize()?;
    }
    transfer.wait().map(drop)
}
