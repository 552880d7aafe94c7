//! The bench's raw driver calls: direct peer copies on a timing stream, and poisoning destinations; the only `unsafe` of `p2p bench`.

use std::time::Duration;

use p2p_core::memory::{DeviceBuffer, Event, Stream};
use p2p_core::{Driver, Error, Result};

use super::sides::Legs;
use super::timing::Clock;

/// Fills `buf` with `value` and waits for it.
pub(super) fn poison(
    driver: &dyn Driver,
    buf: &DeviceBuffer,
    value: u8,
    stream: &Stream,
) -> Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    // SAFETY: `buf` is a live allocation of `buf.len()` bytes, borrowed
    // until the synchronize below has waited for the fill.
    unsafe { driver.memset_async(buf.ptr(), value, buf.len(), stream.id())? };
    stream.synchronize()
}

/// Times one direct peer copy per leg, all at once: the first leg on the
/// clock's stream, a second one (both directions) on `other` after the
/// start event, joined back through `joined` (timing-free) before the end
/// event. Every leg must be device to device.
///
/// If anything fails once a copy is queued, the copies may still be
/// running: `legs` is marked hung, so its memory is leaked, not freed under them.
pub(super) fn timed_peer(
    driver: &dyn Driver,
    clock: &Clock,
    other: Option<(&Stream, &Event)>,
    legs: &mut Legs,
    deadline: Duration,
) -> Result<f64> {
    let mut queued = false;
    let result = clock.time(deadline, |stream, start| -> Result<()> {
        let mut streams = vec![stream];
        if let Some((other, _)) = other {
            driver.stream_wait_event(other.id(), start.id())?;
            streams.push(other);
        }
        if legs.legs.len() != streams.len() {
            return Err(Error::Unsupported(format!(
                "{} peer copies for {} streams",
                legs.legs.len(),
                streams.len()
            )));
        }
        for (leg, stream) in legs.legs.iter_mut().zip(&streams) {
            let (Some(src), Some(dst)) = (leg.src.device_buffer(), leg.dst.device_buffer()) else {
                return Err(Error::Unsupported(
                    "a peer copy needs device memory on both sides".into(),
                ));
            };
            if src.len() != dst.len() {
                return Err(Error::SizeMismatch {
                    src_bytes: src.len(),
                    dst_bytes: dst.len(),
                });
            }
            if src.is_empty() {
                continue;
            }
            queued = true;
            // SAFETY: both buffers are live allocations of `src.len()` bytes
            // owned by `legs`, which outlives the wait for the end event
            // below, or, if that wait fails, is marked hung and leaks them.
            unsafe { driver.copy_peer_async(dst.ptr(), src.ptr(), src.len(), stream.id())? };
        }
        if let Some((other, joined)) = other {
            joined.record(other)?;
            driver.stream_wait_event(stream.id(), joined.id())?;
        }
        Ok(())
    });
    if result.is_err() && queued {
        legs.hung = true;
    }
    result
}
