//! The CUDA backend of [`Driver`]: real GPUs through the driver API (cudarc, loaded at run time).
//!
//! [`CudaDriver::new`] never panics on a machine without a driver: it checks
//! that `libcuda` can be loaded, and that it has every symbol we call, before
//! calling anything, and reports what is missing as [`Error::NoDriver`].
//!
//! Contexts: each device's *primary* context (the one PyTorch and cudarc use,
//! so peer access enabled by one is seen by the others), held as cudarc's
//! [`CudaContext`]. It is retained the first time the device is used, never
//! before, so idle GPUs get no context; or it is the caller's own, given to
//! [`CudaDriver::from_contexts`], so a cudarc program and this driver share
//! one library load and the same contexts. Every call binds the right
//! context to the calling thread first (`cuCtxSetCurrent`, which costs
//! nanoseconds) and binds back whatever was current before, so the driver is
//! callable from any thread and never changes the caller's current device
//! (the CUDA runtime, hence PyTorch, reads it from the current context).
//!
//! Handles are the driver's own, cast to `u64`: `StreamId::raw` is a
//! `CUstream` (0 = the device's legacy default stream, usable without being
//! created), `EventId::raw` a `CUevent`, `PoolId::raw` a `CUmemoryPool`, so
//! streams and memory made by PyTorch or cudarc can be passed in as they are
//! (`StreamId::from(&cuda_stream)`).
//!
//! Decisions, documented once:
//! * A 0-byte allocation allocates 1 byte: CUDA refuses 0-byte allocations,
//!   and a real, unique address keeps `free_device`, `pool_of` and the owning
//!   wrappers free of special cases. Copies and fills of 0 bytes make no call.
//! * `AllocKind::Pool` is `cuMemAllocFromPoolAsync` on the device's *default*
//!   pool (not whatever `cuDeviceSetMemPool` made current), queued on a private
//!   non-blocking stream of this driver that is then synchronized, so the
//!   memory is ready for any stream when the call returns and no one else's
//!   work is waited for. `free_device` uses `cuMemFree` for both kinds, which
//!   CUDA allows for pool memory (it does not synchronize: the caller's
//!   contract already says no queued work uses the memory).
//! * Pinned host memory belongs to the context that allocated it and dies
//!   with it, so it is allocated in a context this driver holds: one it holds
//!   already; else the primary context of a device that has one now (the
//!   caller's current device first), which retaining does not create; only in
//!   a process with no context at all is one created, on device 0, because
//!   pinning cannot be done without a context.
//! * A driver that loads but cannot initialise (`cuInit` fails: no device
//!   visible, a stub library, a kernel-module mismatch) is `Error::NoDriver`
//!   with the driver's error name in `detail`: there is nothing this backend
//!   could do on such a machine, and every `CudaDriver` has at least one device.

mod backend;
mod discovery;
mod ffi;
mod interop;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::CudaContext;

use ffi::{CUcontext, CUdevice, CUstream};

use crate::{DeviceInfo, Driver, Error, Result};

/// Real GPUs through the CUDA driver API. See the module docs for the decisions.
pub struct CudaDriver {
    driver_version: i32,
    devices: Vec<DeviceInfo>,
    states: Vec<DeviceState>,
    /// The driver has the stream-ordered allocator (CUDA 11.2+).
    has_pools: bool,
    /// The driver has the batched copy these bindings call (CUDA 12.8+).
    has_batch_copy: bool,
    /// The device whose context allocated each pinned buffer (by address):
    /// it is freed in that context.
    pinned_owners: Mutex<HashMap<usize, usize>>,
}

// SAFETY: the raw handles inside (allocation streams) are streams of primary
// contexts, which the CUDA driver makes usable from any thread; the
// `OnceLock`s make their lazy creation race-free, and the rest is `Send`.
unsafe impl Send for CudaDriver {}
// SAFETY: as above; `&self` methods only read the handles and call the thread-safe driver.
unsafe impl Sync for CudaDriver {}

/// Restores the thread's previous context when dropped (see `CudaDriver::bind`).
struct Bound {
    previous: CUcontext,
    context: CUcontext,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if self.previous != self.context {
            // SAFETY: `previous` was current on this thread a moment ago (or
            // null, which unbinds); a context someone else retained stays
            // valid while it is current. Errors cannot be reported from Drop.
            let _ = unsafe { ffi::context::set_current(self.previous) };
        }
    }
}

/// What the backend holds per device, created on first use.
struct DeviceState {
    handle: CUdevice,
    /// The primary context (ours, or the caller's from `from_contexts`).
    context: OnceLock<Arc<CudaContext>>,
    /// A private non-blocking stream for pool allocations; `Drop` destroys it.
    alloc_stream: OnceLock<CUstream>,
}

impl CudaDriver {
    /// Loads the driver, initialises it and lists the visible devices.
    ///
    /// Creates no context: that waits until a device is first used.
    ///
    /// # Errors
    /// [`Error::NoDriver`] when `libcuda` is missing, too old (no CUDA 11.0
    /// symbols, or none of those the chosen bindings call), fails `cuInit`
    /// (no device visible, a stub library, a driver/kernel mismatch) or shows
    /// no device; [`Error::Cuda`] when a device query fails.
    pub fn new() -> Result<CudaDriver> {
        let found = discovery::discover()?;
        let states = found
            .handles
            .iter()
            .map(|&handle| DeviceState {
                handle,
                context: OnceLock::new(),
                alloc_stream: OnceLock::new(),
            })
            .collect();
        Ok(CudaDriver {
            driver_version: found.driver_version,
            devices: found.devices,
            states,
            has_pools: found.has_pools,
            has_batch_copy: found.has_batch_copy,
            pinned_owners: Mutex::new(HashMap::new()),
        })
    }

    /// A driver that works in the caller's own cudarc contexts: the same
    /// library load and the same primary contexts, so streams, events and
    /// memory of the caller's cudarc code are ours to use and ours theirs.
    /// Devices not among `contexts` get their primary context on first use,
    /// as with [`CudaDriver::new`].
    ///
    /// # Errors
    /// As [`CudaDriver::new`]; [`Error::Unsupported`] for a context that is
    /// not a device's primary context (this driver works in primary contexts
    /// only: its events could not be recorded on such a context's streams);
    /// [`Error::InvalidDevice`] for one on a device this driver does not see.
    pub fn from_contexts<I>(contexts: I) -> Result<CudaDriver>
    where
        I: IntoIterator<Item = Arc<CudaContext>>,
    {
        let driver = CudaDriver::new()?;
        for context in contexts {
            let ordinal = context.ordinal();
            driver.check_device(ordinal)?;
            let state = &driver.states[ordinal];
            if !context.is_primary() || context.cu_device() != state.handle {
                return Err(Error::Unsupported(format!(
                    "CudaDriver::from_contexts: the context given for cuda:{ordinal} is not \
                     that device's primary context (CudaContext::new makes one)"
                )));
            }
            // One primary context per device: a repeat is the same context.
            let _ = state.context.set(context);
        }
        Ok(driver)
    }

    /// The device's primary context as cudarc's [`CudaContext`], retained on
    /// first use: cudarc code can allocate and launch in it and pass its
    /// streams to this driver (or to a `Mover` built on it). Leaves the
    /// calling thread's current context as it was.
    ///
    /// # Errors
    /// [`Error::InvalidDevice`] for an ordinal this driver does not see;
    /// [`Error::Cuda`] when the context cannot be retained.
    pub fn context(&self, device: usize) -> Result<Arc<CudaContext>> {
        self.held_context(device).cloned()
    }

    /// The device's context, retained on first use.
    fn held_context(&self, device: usize) -> Result<&Arc<CudaContext>> {
        self.check_device(device)?;
        let state = &self.states[device];
        if let Some(context) = state.context.get() {
            return Ok(context);
        }
        // `CudaContext::new` binds the context it returns to this thread (and
        // dropping a spare one binds that): bind back the caller's after both.
        let previous = ffi::context::current()?;
        let made = ffi::named("cuDevicePrimaryCtxRetain", CudaContext::new(device));
        let spare = match made {
            // Another thread may have set one first: the handle is the same
            // either way (one primary context per device); ours is dropped,
            // giving back its reference.
            Ok(context) => state.context.set(context).err(),
            Err(err) => {
                // SAFETY: `previous` was current a moment ago, or is null.
                let _ = unsafe { ffi::context::set_current(previous) };
                return Err(err);
            }
        };
        drop(spare);
        // SAFETY: as above.
        unsafe { ffi::context::set_current(previous)? };
        state
            .context
            .get()
            .ok_or_else(|| Error::Unsupported(format!("cuda:{device} has no context")))
    }

    /// Binds `device`'s primary context to the calling thread until the
    /// returned guard drops, which binds back whatever was current before.
    fn bind(&self, device: usize) -> Result<Bound> {
        let context = self.held_context(device)?.cu_ctx();
        let previous = ffi::context::current()?;
        if previous != context {
            // SAFETY: `context` is retained by us until `Drop`.
            unsafe { ffi::context::set_current(context)? };
        }
        Ok(Bound { previous, context })
    }

    /// Binds a context to pin host memory in, and says whose it is (see the
    /// module docs for the order): no idle GPU gets a context for this.
    fn bind_for_pinning(&self) -> Result<(usize, Bound)> {
        if let Some(device) = self.states.iter().position(|s| s.context.get().is_some()) {
            return Ok((device, self.bind(device)?));
        }
        let mut candidates = Vec::with_capacity(self.states.len() + 1);
        if !ffi::context::current()?.is_null() {
            // SAFETY: a context is current on this thread (checked just above).
            if let Ok(handle) = unsafe { ffi::context::current_device() } {
                candidates.extend(self.states.iter().position(|s| s.handle == handle));
            }
        }
        candidates.extend(0..self.states.len());
        for device in candidates {
            if ffi::context::primary_active(self.states[device].handle)? {
                return Ok((device, self.bind(device)?));
            }
        }
        Ok((0, self.bind(0)?))
    }

    /// The private stream for pool allocations on `device`; its context must be bound.
    fn alloc_stream(&self, device: usize) -> Result<CUstream> {
        let state = &self.states[device];
        if let Some(&stream) = state.alloc_stream.get() {
            return Ok(stream);
        }
        let stream = ffi::stream::create_non_blocking()?;
        let kept = *state.alloc_stream.get_or_init(|| stream);
        if kept != stream {
            // Another thread made one first: ours was never used.
            // SAFETY: `stream` is live, ours alone, and destroyed once here.
            if let Err(err) = unsafe { ffi::stream::destroy(stream) } {
                tracing::warn!("destroying a spare allocation stream on cuda:{device}: {err}");
            }
        }
        Ok(kept)
    }

    /// `cuMemAllocFromPoolAsync` on the default pool, ready for every stream on return.
    fn alloc_from_default_pool(&self, device: usize, bytes: usize) -> Result<u64> {
        if !self.has_pools {
            return Err(Error::Unsupported(format!(
                "pool allocation on cuda:{device}: this driver ({}) has no stream-ordered allocator (CUDA 11.2+)",
                self.driver_version
            )));
        }
        let pool = ffi::device::default_mem_pool(self.states[device].handle)?;
        let stream = self.alloc_stream(device)?;
        // SAFETY: `pool` is the device's default pool (lives as long as the
        // driver), `stream` is ours and of the bound context.
        let addr = unsafe { ffi::memory::alloc_from_pool_async(bytes, pool, stream)? };
        // SAFETY: `stream` is live.
        if let Err(err) = unsafe { ffi::stream::synchronize(stream) } {
            // SAFETY: nothing but the allocation itself was queued with `addr`.
            let _ = unsafe { ffi::memory::free(addr) };
            return Err(err);
        }
        Ok(addr)
    }
}

impl Drop for CudaDriver {
    /// Destroys our streams, gives back our context references, and binds
    /// back the caller's current context (or none, if that was one of ours
    /// and is gone now). Failures are logged: `Drop` cannot return them.
    fn drop(&mut self) {
        let previous = ffi::context::current();
        let mut previous_gone = false;
        for (ordinal, state) in self.states.iter_mut().enumerate() {
            let Some(context) = state.context.take() else {
                continue;
            };
            if let Some(stream) = state.alloc_stream.take() {
                // SAFETY: the context is retained by `context`; the stream was
                // made in it, is ours alone, and is destroyed once here.
                let destroyed = unsafe {
                    ffi::context::set_current(context.cu_ctx())
                        .and_then(|()| ffi::stream::destroy(stream))
                };
                if let Err(err) = destroyed {
                    tracing::warn!("destroying the allocation stream of cuda:{ordinal}: {err}");
                }
            }
            let was_previous = previous.as_ref().is_ok_and(|&p| p == context.cu_ctx());
            // Gives back our reference (cudarc's Drop binds it and releases it
            // when ours was the last one).
            drop(context);
            if was_previous {
                previous_gone = !ffi::context::primary_active(state.handle).unwrap_or(false);
            }
        }
        match previous {
            Ok(previous) => {
                let restore = if previous_gone {
                    std::ptr::null_mut()
                } else {
                    previous
                };
                // SAFETY: `restore` was current when `drop` began and is still
                // live (or is null, which unbinds).
                if let Err(err) = unsafe { ffi::context::set_current(restore) } {
                    tracing::warn!("binding back the caller's CUDA context: {err}");
                }
            }
            Err(err) => tracing::warn!("reading the caller's CUDA context: {err}"),
        }
    }
}

impl fmt::Debug for CudaDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_use: Vec<usize> = (0..self.states.len())
            .filter(|&d| self.states[d].context.get().is_some())
            .collect();
        f.debug_struct("CudaDriver")
            .field("driver_version", &self.driver_version)
            .field("devices", &self.devices)
            .field("contexts_held", &in_use)
            .field("has_pools", &self.has_pools)
            .field("has_batch_copy", &self.has_batch_copy)
            .finish()
    }
}

/// A driver handle (`CUstream`, `CUevent`, `CUmemoryPool`) as the `u64` our ids carry.
fn handle_to_raw<T>(handle: *mut T) -> u64 {
    handle as usize as u64
}

/// The driver handle an id's `u64` stands for (0 = null: the legacy default stream).
fn raw_to_handle<T>(raw: u64) -> *mut T {
    raw as usize as *mut T
}

#[cfg(test)]
mod tests {
    use super::ffi::CUresult;
    use super::*;

    #[test]
    fn new_reports_no_driver_without_libcuda_or_lists_devices_with_it() {
        let present = ffi::library_present();
        match CudaDriver::new() {
            Err(Error::NoDriver { detail }) if !present => {
                assert!(detail.contains("libcuda"), "unhelpful detail: {detail}");
            }
            Ok(driver) if present => {
                assert!(driver.device_count() > 0);
                assert!(driver.driver_version() > 0);
                for (ordinal, info) in driver.devices().iter().enumerate() {
                    assert_eq!(info.ordinal, ordinal);
                    assert!(
                        info.uuid.starts_with("GPU-") && info.uuid.len() == 40,
                        "{info:?}"
                    );
                    assert!(info.total_memory_bytes > 0, "{info:?}");
                }
            }
            // A driver library with no GPU behind it (a container without
            // devices): the typed error is the behaviour under test.
            Err(Error::NoDriver { detail })
                if present && detail.contains("CUDA_ERROR_NO_DEVICE") =>
            {
                eprintln!("libcuda is present but shows no device: {detail}");
            }
            other => panic!("libcuda present: {present}; CudaDriver::new() gave {other:?}"),
        }
    }

    #[test]
    fn handles_round_trip_through_raw_ids() {
        assert!(raw_to_handle::<u8>(0).is_null());
        let x = 7u8;
        let p = &x as *const u8 as *mut u8;
        assert_eq!(raw_to_handle::<u8>(handle_to_raw(p)), p);
    }

    #[test]
    fn driver_errors_carry_the_enum_name_and_code() {
        let err = ffi::cuda_error("cuMemAlloc", CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        assert!(ffi::is_code(&err, CUresult::CUDA_ERROR_OUT_OF_MEMORY));
        match err {
            Error::Cuda { call, code, name } => {
                assert_eq!(
                    (call, code, name.as_str()),
                    ("cuMemAlloc", 2, "CUDA_ERROR_OUT_OF_MEMORY")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cudarc_errors_convert_with_their_code_and_name() {
        let err = Error::from(cudarc::driver::DriverError(
            CUresult::CUDA_ERROR_PEER_ACCESS_UNSUPPORTED,
        ));
        match err {
            Error::Cuda { call, code, name } => {
                assert_eq!(call, "a cudarc call");
                assert_eq!(code, CUresult::CUDA_ERROR_PEER_ACCESS_UNSUPPORTED as u32);
                assert_eq!(name, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_batched_copy_is_compiled_exactly_where_the_bindings_have_it() {
        // The default bindings (12.8) have it; 13.x renames it; older ones lack it.
        let symbol = ffi::copy::BATCH_SYMBOL.map(|s| s.to_str().unwrap_or("?"));
        if cfg!(cuda_at_least_13000) {
            assert_eq!(symbol, Some("cuMemcpyBatchAsync_v2"));
        } else if cfg!(cuda_at_least_12080) {
            assert_eq!(symbol, Some("cuMemcpyBatchAsync"));
        } else {
            assert_eq!(symbol, None);
        }
    }
}
