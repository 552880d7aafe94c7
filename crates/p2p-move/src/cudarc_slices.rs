//! Moves of cudarc's device slices (`CudaSlice`, `CudaView`, `CudaViewMut`)
//! between GPUs, safely: [`Mover::memcpy_dtod`], shaped like cudarc's
//! `CudaStream::memcpy_dtod` and ordered the way cudarc orders its own work.
//!
//! The slices bring their own ordering: each belongs to a stream, and, while
//! its context manages synchronization across streams, carries a read event
//! and a write event that cudarc waits on before each use
//! (`DevicePtr::device_ptr`, `DevicePtrMut::device_ptr_mut`) and records
//! after it (the `SyncOnDrop` they return). A move takes both slices the same
//! way cudarc's own copy does, queues the copy after the work on both slices'
//! streams (`StreamOrder`), makes the source's stream wait for the copy too,
//! and only then lets the `SyncOnDrop`s record: so every later use of either
//! slice through cudarc (a kernel, a copy, a host read, freeing it) waits for
//! the move, without a host synchronization.

use cudarc::driver::{CudaContext, CudaStream, DevicePtr, DevicePtrMut};
use p2p_core::{Backend, DeviceAddr, StreamId};

use crate::{Error, Mover, Plan, RawBytes, Result, StreamOrder};

impl Mover {
    /// Copies `src` into the start of `dst`, which may be on another GPU, by
    /// the fastest route the verdicts allow (direct peer copy, staging
    /// through pinned host memory, or a hop through a third GPU), like
    /// cudarc's `CudaStream::memcpy_dtod`.
    ///
    /// Returns once the copy is queued, with the plan it follows. The copy
    /// starts after the work queued on both slices' streams (and, where
    /// cudarc tracks per-slice events, after the last write of `src` and the
    /// last use of `dst`); the work cudarc queues afterwards on either
    /// slice's stream, or on any stream through the slices' events, waits
    /// for it. So `dst` may be read, and `src` written or dropped, at once.
    ///
    /// The mover must be built on a `CudaDriver` (for example
    /// `CudaDriver::from_contexts` over the program's `CudaContext`s), and
    /// the slices must live in primary contexts (`CudaContext::new`). The
    /// mover's verify mode does not apply: nothing here waits for the copy.
    ///
    /// # Errors
    /// [`p2p_core::Error::SizeMismatch`] when `dst` is shorter than `src`;
    /// [`p2p_core::Error::Unsupported`] for a mover on another backend or a
    /// slice in a non-primary context; [`p2p_core::Error::InvalidDevice`]
    /// for a slice on a GPU the mover does not see; and whatever planning and
    /// queuing the move can fail with. On an error after the copy was
    /// queued, this waits for the copy before returning.
    pub fn memcpy_dtod<T, Src, Dst>(&self, src: &Src, dst: &mut Dst) -> Result<Plan>
    where
        Src: DevicePtr<T> + ?Sized,
        Dst: DevicePtrMut<T> + ?Sized,
    {
        if src.len() > dst.len() {
            return Err(p2p_core::Error::SizeMismatch {
                src_bytes: src.num_bytes(),
                dst_bytes: dst.num_bytes(),
            }
            .into());
        }
        let bytes = src.num_bytes();
        // Own handles on the streams, so the slices' borrows below can outlive them.
        let (src_stream, dst_stream) = (src.stream().clone(), dst.stream().clone());
        let src_device = self.usable_device(&src_stream)?;
        let dst_device = self.usable_device(&dst_stream)?;
        let order = StreamOrder {
            src_stream: Some(StreamId::from(&src_stream)),
            dst_stream: Some(StreamId::from(&dst_stream)),
        };

        // As cudarc's own copy takes them: each stream waits for the slice's
        // earlier uses, and the returned guards record the slice's events on
        // its stream when dropped, which must come after the copy is ordered.
        let (src_addr, record_src) = src.device_ptr(&src_stream);
        let (dst_addr, record_dst) = dst.device_ptr_mut(&dst_stream);
        let src_raw = RawBytes::Device(DeviceAddr {
            device: src_device,
            addr: src_addr,
        });
        let dst_raw = RawBytes::Device(DeviceAddr {
            device: dst_device,
            addr: dst_addr,
        });

        // SAFETY: cudarc keeps both allocations alive until work queued on
        // their streams after this point has run (it frees a slice on its
        // stream, after its events), and nobody else touches them before that
        // work: `dst`'s stream waits for the copy (`order.dst_stream`), and
        // `src`'s stream is made to wait for `dst`'s below; should that
        // fail, this waits for the copy before returning.
        let completion = unsafe { self.copy_raw_async(src_raw, dst_raw, bytes, order)? };
        let plan = completion.plan().clone();
        if let Err(err) = src_stream.join(&dst_stream) {
            // `src`'s stream is not ordered after the copy: hold the borrow
            // until the copy is over (`dst`'s stream waits for it).
            if let Err(sync) = dst_stream.synchronize() {
                tracing::error!("waiting for a move after a failed stream join: {sync}");
            }
            return Err(Error::Core(err.into()));
        }
        // The completion owns no memory; the streams now carry the order.
        drop(completion);
        drop(record_src);
        drop(record_dst);
        Ok(plan)
    }

    /// The device of a cudarc stream, if this mover can use it.
    fn usable_device(&self, stream: &CudaStream) -> Result<usize> {
        let driver = self.driver();
        if driver.backend() != Backend::Cuda {
            return Err(p2p_core::Error::Unsupported(format!(
                "moving cudarc slices needs a mover on the CUDA backend, not {:?}",
                driver.backend()
            ))
            .into());
        }
        let context: &CudaContext = stream.context();
        let device = context.ordinal();
        driver.check_device(device)?;
        if !context.is_primary() {
            return Err(p2p_core::Error::Unsupported(format!(
                "a cudarc slice on cuda:{device} lives in a non-primary context; \
                 moves work in primary contexts (CudaContext::new)"
            ))
            .into());
        }
        Ok(device)
    }
}
