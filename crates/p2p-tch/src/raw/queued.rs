//! Copies queued on tensor memory, and the tensors held until they are done.
//!
//! [`queue`] hands tensor addresses to `p2p_move::Mover`. Its contract (the
//! memory stays valid, and the destination untouched by others, until the
//! copy is done) is kept by holding the tensors: [`QueuedCopies`] borrows
//! every source and destination and lets go of them only once the copies
//! are done: after [`QueuedCopies::wait`] (dropping it waits too), or, for
//! non-blocking moves, by handing shallow clones to [`InFlight`] (a shallow
//! clone holds a reference to the storage, so PyTorch cannot free or reuse
//! it) until an event recorded after the copies has fired. A copy that timed out (a hung link) may still write later, so
//! the storage of its tensors is leaked, never freed. After any other
//! failure the devices involved are synchronised before the tensors are
//! released.

use p2p_core::DeviceAddr;
use p2p_move::{BatchCompletion, Completion, Fence, Mover, Plan, RawBytes, StreamOrder};
use tch::{Device, Tensor};

use super::in_flight::InFlight;

/// One copy between two contiguous tensors of `bytes` bytes.
#[derive(Debug)]
pub(crate) struct TensorCopy<'a> {
    /// The source, or its contiguous copy on its own device.
    pub(crate) src: &'a Tensor,
    /// The destination, just allocated by PyTorch.
    pub(crate) dst: &'a Tensor,
    pub(crate) src_device: Device,
    pub(crate) dst_device: Device,
    pub(crate) bytes: usize,
}

impl TensorCopy<'_> {
    fn raw(&self) -> (RawBytes, RawBytes, usize) {
        (
            raw_bytes(self.src, self.src_device),
            raw_bytes(self.dst, self.dst_device),
            self.bytes,
        )
    }
}

/// The address of a contiguous tensor's first byte. Host memory is always
/// called pageable (see the crate docs).
fn raw_bytes(tensor: &Tensor, device: Device) -> RawBytes {
    let ptr = tensor.data_ptr();
    match device {
        Device::Cuda(device) => RawBytes::Device(DeviceAddr {
            device,
            addr: ptr as usize as u64,
        }),
        _ => RawBytes::Host {
            ptr: ptr.cast(),
            pinned: false,
        },
    }
}

#[derive(Debug)]
enum Handle {
    Single(Completion),
    Batch(BatchCompletion),
}

/// Copies queued on tensor memory. Borrows the tensors until the copies are
/// done: [`QueuedCopies::wait`], [`park`] (which takes references to their
/// storage instead), or dropping it, which waits.
#[derive(Debug)]
#[must_use = "dropping queued copies waits for them"]
pub(crate) struct QueuedCopies<'a> {
    handle: Option<Handle>,
    copies: Vec<TensorCopy<'a>>,
}

/// Queues `copies` (one call, or one batch) ordered with `order`. On failure
/// nothing is left running on the tensors.
pub(crate) fn queue<'a>(
    mover: &Mover,
    copies: Vec<TensorCopy<'a>>,
    order: StreamOrder,
) -> Result<QueuedCopies<'a>, p2p_move::Error> {
    let items: Vec<(RawBytes, RawBytes, usize)> = copies.iter().map(TensorCopy::raw).collect();
    if items.is_empty() {
        return Ok(QueuedCopies {
            handle: None,
            copies,
        });
    }
    let queued = if let [(src, dst, len)] = items.as_slice() {
        // SAFETY: every source and destination tensor is borrowed by
        // `copies` for 'a, and the returned `QueuedCopies` lets go of them
        // only once the copies are done (it waits when dropped, parks
        // references to the storage, or leaks the storage when a wait times
        // out), so every range stays allocated; each range is a contiguous tensor's
        // `numel * element size` bytes from its first element; the
        // destinations were just allocated and are not yet visible to anyone
        // else, so nobody else writes them.
        let completion = unsafe { mover.copy_raw_async(*src, *dst, *len, order) };
        completion.map(Handle::Single)
    } else {
        // SAFETY: as above, for every item.
        let batch = unsafe { mover.copy_batch_raw_async(&items, order) };
        batch.map(Handle::Batch)
    };
    match queued {
        Ok(handle) => Ok(QueuedCopies {
            handle: Some(handle),
            copies,
        }),
        Err(err) => {
            release_after_failure(&err, copies);
            Err(err)
        }
    }
}

impl QueuedCopies<'_> {
    /// Blocks until every copy is done, then lets the tensors go.
    pub(crate) fn wait(mut self) -> Result<Vec<Plan>, p2p_move::Error> {
        let copies = std::mem::take(&mut self.copies);
        let result = match self.handle.take() {
            None => Ok(Vec::new()),
            Some(Handle::Single(completion)) => completion.wait().map(|plan| vec![plan]),
            Some(Handle::Batch(batch)) => batch.wait(),
        };
        match result {
            Ok(plans) => {
                drop(copies);
                Ok(plans)
            }
            Err(err) => {
                release_after_failure(&err, copies);
                Err(err)
            }
        }
    }
}

/// Hands the tensors of `batches` to `in_flight` (as references to their
/// storage), to be let go once `done` has fired. The caller has recorded
/// `done` after every copy of every batch.
pub(crate) fn park(batches: Vec<QueuedCopies<'_>>, in_flight: &InFlight, done: Fence) {
    let mut tensors = Vec::new();
    for mut batch in batches {
        // The completions own no memory; dropping them does not wait.
        batch.handle = None;
        for copy in std::mem::take(&mut batch.copies) {
            tensors.push(copy.src.shallow_clone());
            tensors.push(copy.dst.shallow_clone());
        }
    }
    in_flight.push(done, tensors);
}

impl Drop for QueuedCopies<'_> {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let queued = QueuedCopies {
                handle: self.handle.take(),
                copies: std::mem::take(&mut self.copies),
            };
            if let Err(err) = queued.wait() {
                tracing::error!("copies dropped without being waited for failed: {err}");
            }
        }
    }
}

/// After a failed move: a copy that timed out may still write, so the
/// storage of its tensors is leaked (never freed, even once the caller's
/// tensors are dropped); otherwise the devices are synchronised (nothing of
/// ours can still be running) and the tensors released.
fn release_after_failure(err: &p2p_move::Error, copies: Vec<TensorCopy<'_>>) {
    if is_timeout(err) {
        tracing::error!(
            "a copy did not finish in time ({err}); leaking {} tensor pair(s) it may still write",
            copies.len()
        );
        for copy in copies {
            // A reference to the storage that is never given back.
            std::mem::forget(copy.src.shallow_clone());
            std::mem::forget(copy.dst.shallow_clone());
        }
        return;
    }
    let mut devices: Vec<usize> = copies
        .iter()
        .flat_map(|copy| [copy.src_device, copy.dst_device])
        .filter_map(|device| match device {
            Device::Cuda(ordinal) => Some(ordinal),
            _ => None,
        })
        .collect();
    devices.sort_unstable();
    devices.dedup();
    for device in devices {
        // tch unwraps the CUDA error of a synchronize: a panic here must not
        // free memory a copy may still write, so a failed synchronize leaks.
        let synchronized = std::panic::catch_unwind(|| tch::Cuda::synchronize(device as i64));
        if synchronized.is_err() {
            tracing::error!(
                "synchronizing cuda:{device} after a failed move failed; leaking its tensors"
            );
            for copy in copies {
                std::mem::forget(copy.src.shallow_clone());
                std::mem::forget(copy.dst.shallow_clone());
            }
            return;
        }
    }
    drop(copies);
}

fn is_timeout(err: &p2p_move::Error) -> bool {
    matches!(err, p2p_move::Error::Core(p2p_core::Error::Timeout { .. }))
}
