//! The crate's only `unsafe` code: loading `libtorch_cuda.so`, asking PyTorch
//! for its current CUDA streams, and queuing copies on tensor memory while
//! keeping that memory alive until the copies are done.
//!
//! # `libtorch_cuda.so`
//!
//! A binary that links tch gets `-ltorch_cuda` on its link line, but the
//! linker drops the library (`--as-needed`: no symbol of it is referenced),
//! and then PyTorch's CUDA hooks are never registered: `tch::Cuda::is_available()`
//! is false even on a GPU machine. Worse, PyTorch looks its hooks up *once*:
//! any CUDA query made before the library is loaded fixes "no CUDA" for the
//! life of the process. So this module loads the library with `dlopen`
//! (`RTLD_GLOBAL`, never unloaded):
//!
//! * from an entry in `.init_array`, when the program starts (before `main`),
//!   in every binary that links this crate: downstream binaries see their GPUs
//!   with no build-script or linker flag of their own;
//! * again (a no-op once done) at [`crate::init`] and at every entry point of
//!   the crate, in case the start-up hook was dropped by the linker.
//!
//! It is looked up by name first (`LD_LIBRARY_PATH`, the binary's run path,
//! the system), then next to the `libtorch_cpu.so` the process already has
//! loaded (read from `/proc/self/maps`).
//!
//! # Current streams
//!
//! tch has no stream API. PyTorch exports a C function for it from
//! `libtorch_cuda.so`, part of its AOTInductor C shim
//! (`torch/csrc/inductor/aoti_torch/c/shim.h`):
//! `AOTITorchError aoti_torch_get_current_cuda_stream(int32_t device_index, void** ret_stream)`,
//! which returns `getCurrentCUDAStream(device_index).stream()` for the
//! calling thread: a `cudaStream_t`, which is a `CUstream`, null for the
//! legacy default stream. Our `CudaDriver` takes both as they are.
//!
//! # Copies on tensor memory
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

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LAZY};
use p2p_core::{DeviceAddr, Driver, EventId, StreamId};
use p2p_move::{BatchCompletion, Completion, Mover, Plan, RawBytes, StreamOrder};
use tch::{Device, Tensor};

/// The library that holds PyTorch's CUDA code.
const LIBRARY_NAME: &str = "libtorch_cuda.so";
/// Where it usually lies: next to this one, which tch links.
const CPU_LIBRARY_NAME: &str = "libtorch_cpu.so";
const CURRENT_STREAM_SYMBOL: &[u8] = b"aoti_torch_get_current_cuda_stream\0";

/// `aoti_torch_get_current_cuda_stream`; 0 is `AOTI_TORCH_SUCCESS`.
type CurrentStreamFn = unsafe extern "C" fn(device_index: i32, ret_stream: *mut *mut c_void) -> i32;

/// `libtorch_cuda.so`, loaded for the life of the process.
#[derive(Debug)]
pub(crate) struct TorchCuda {
    /// The file that was loaded, for messages.
    pub(crate) path: String,
    current_stream: CurrentStreamFn,
    /// Never dropped (it lives in a static): the function pointer above stays valid.
    _library: Library,
}

static TORCH_CUDA: OnceLock<Result<TorchCuda, String>> = OnceLock::new();

/// Runs [`torch_cuda`] when the program starts, before `main` and before
/// anything can ask PyTorch about CUDA (see the module docs).
#[cfg(target_os = "linux")]
#[used]
// SAFETY: `.init_array` holds `extern "C" fn()` pointers that the loader
// calls once, at start-up, after the libraries the binary links (libtorch_cpu
// among them) are initialised; `load_at_start` has that type, returns errors
// as values instead of panicking (a panic could not unwind out of it anyway:
// it would abort), and uses nothing that `main` sets up.
#[unsafe(link_section = ".init_array")]
static LOAD_AT_START: extern "C" fn() = load_at_start;

#[cfg(target_os = "linux")]
extern "C" fn load_at_start() {
    let _ = torch_cuda();
}

/// `libtorch_cuda.so`, loaded on first call; `Err` says why it could not be.
pub(crate) fn torch_cuda() -> Result<&'static TorchCuda, String> {
    TORCH_CUDA
        .get_or_init(load_torch_cuda)
        .as_ref()
        .map_err(Clone::clone)
}

fn load_torch_cuda() -> Result<TorchCuda, String> {
    let mut candidates = vec![LIBRARY_NAME.to_owned()];
    if let Some(dir) = loaded_library_dir(CPU_LIBRARY_NAME) {
        candidates.push(dir.join(LIBRARY_NAME).to_string_lossy().into_owned());
    }
    let mut failures = Vec::new();
    for candidate in candidates {
        // SAFETY: `dlopen` runs the library's static initialisers, which
        // register PyTorch's CUDA hooks: the same code that runs when a
        // program linked against it starts, which is all this emulates. The
        // handle is kept in a static and never closed, so no termination
        // routine runs while PyTorch may still use the library.
        let opened = unsafe { Library::open(Some(candidate.as_str()), RTLD_LAZY | RTLD_GLOBAL) };
        let library = match opened {
            Ok(library) => library,
            Err(err) => {
                failures.push(format!("{candidate}: {err}"));
                continue;
            }
        };
        // SAFETY: PyTorch declares the symbol with exactly this C signature
        // (module docs); the pointer is copied out of the `Symbol` and stays
        // valid because the library is never unloaded.
        let symbol = unsafe { library.get::<CurrentStreamFn>(CURRENT_STREAM_SYMBOL) };
        let current_stream = match symbol {
            Ok(symbol) => *symbol,
            Err(err) => {
                return Err(format!(
                    "{candidate} has no `aoti_torch_get_current_cuda_stream` ({err}): \
                     this PyTorch is too old; p2p-tch is built for PyTorch 2.11"
                ))
            }
        };
        // The file the loader found, for messages.
        let path = loaded_library_dir(LIBRARY_NAME)
            .map(|dir| dir.join(LIBRARY_NAME).to_string_lossy().into_owned())
            .unwrap_or(candidate);
        return Ok(TorchCuda {
            path,
            current_stream,
            _library: library,
        });
    }
    Err(format!(
        "{LIBRARY_NAME} could not be loaded ({}): this PyTorch is a CPU-only build, or its \
         `torch/lib` folder is not on LD_LIBRARY_PATH",
        failures.join("; ")
    ))
}

/// The folder of a shared library this process has loaded, from `/proc/self/maps`.
fn loaded_library_dir(name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(PathBuf::from)
        .find(|path| path.file_name().is_some_and(|file| file == name))
        .and_then(|path| path.parent().map(PathBuf::from))
}

impl TorchCuda {
    /// PyTorch's current stream of `device` for the calling thread.
    pub(crate) fn current_stream(&self, device: usize) -> Result<StreamId, String> {
        let index = i32::try_from(device).map_err(|_| format!("cuda:{device} is out of range"))?;
        let mut stream: *mut c_void = std::ptr::null_mut();
        // SAFETY: a function of the loaded (never unloaded) library with this
        // signature; it writes one pointer through `ret_stream`, which points
        // to a live local, and turns C++ exceptions into a non-zero code.
        let code = unsafe { (self.current_stream)(index, &mut stream) };
        if code != 0 {
            return Err(format!(
                "PyTorch could not give the current stream of cuda:{device} (error {code})"
            ));
        }
        Ok(StreamId {
            device,
            raw: stream as usize as u64,
        })
    }
}

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
pub(crate) fn park(batches: Vec<QueuedCopies<'_>>, in_flight: &InFlight, done: EventId) {
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

/// Non-blocking moves still in flight, and the events that mark their end.
///
/// Each entry is the tensors of one move with an event recorded after its
/// copies; the tensors are let go once the event has fired. Dropping waits
/// for every move (a hung one leaks its tensors), then destroys the events.
#[derive(Debug)]
pub(crate) struct InFlight {
    driver: Arc<dyn Driver>,
    pending: Mutex<Vec<(EventId, Vec<Tensor>)>>,
    /// Free events, per device, reused across moves.
    free_events: Vec<Mutex<Vec<EventId>>>,
}

/// How long dropping an [`InFlight`] waits for each move.
const DROP_DEADLINE: Duration = Duration::from_secs(60);

impl InFlight {
    pub(crate) fn new(driver: Arc<dyn Driver>) -> InFlight {
        let devices = driver.device_count();
        InFlight {
            free_events: (0..devices).map(|_| Mutex::new(Vec::new())).collect(),
            pending: Mutex::new(Vec::new()),
            driver,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<(EventId, Vec<Tensor>)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves not known to be finished.
    pub(crate) fn len(&self) -> usize {
        self.pending().len()
    }

    /// A free event of `device`, created if there is none.
    pub(crate) fn take_event(&self, device: usize) -> Result<EventId, p2p_core::Error> {
        let slot = self
            .free_events
            .get(device)
            .ok_or(p2p_core::Error::InvalidDevice {
                ordinal: device,
                count: self.free_events.len(),
            })?;
        let reused = slot.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match reused {
            Some(event) => Ok(event),
            None => self.driver.create_event(device),
        }
    }

    /// Takes `event` back for reuse. It may not have fired yet: recording it
    /// again later does not disturb waits already queued on it.
    pub(crate) fn give_back(&self, event: EventId) {
        if let Some(slot) = self.free_events.get(event.device) {
            slot.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        }
    }

    fn push(&self, done: EventId, tensors: Vec<Tensor>) {
        self.pending().push((done, tensors));
    }

    /// Lets go of the tensors of every finished move. An event that cannot
    /// be queried counts as not finished: its tensors stay alive rather than
    /// risk being freed under a running copy.
    pub(crate) fn reclaim(&self) {
        let finished: Vec<(EventId, Vec<Tensor>)> = {
            let mut pending = self.pending();
            if pending.is_empty() {
                return;
            }
            let (done, running) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|(event, _)| self.driver.event_done(*event).unwrap_or(false));
            *pending = running;
            done
        };
        // Outside the lock: freeing a tensor calls into PyTorch.
        for (event, tensors) in finished {
            drop(tensors);
            self.give_back(event);
        }
    }

    /// Waits for every move (each up to `deadline`) and lets go of its
    /// tensors. A move that does not finish in time keeps its tensors
    /// forever (leaked); the first such error is returned once all moves
    /// have been handled.
    pub(crate) fn wait_all(&self, deadline: Duration) -> Result<(), p2p_core::Error> {
        let pending = std::mem::take(&mut *self.pending());
        let mut first_error = None;
        for (event, tensors) in pending {
            match self.driver.wait_event(event, deadline) {
                Ok(()) => {
                    drop(tensors);
                    self.give_back(event);
                }
                Err(err) => {
                    tracing::error!(
                        "a non-blocking move did not finish ({err}); leaking its tensors"
                    );
                    std::mem::forget(tensors);
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Err(err) = self.wait_all(DROP_DEADLINE) {
            tracing::error!("dropping a TchMover: {err}");
        }
        for slot in &mut self.free_events {
            for event in slot.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
                // SAFETY: every free event was created by this driver and is
                // held here alone: pending moves give theirs back only once
                // they have fired, and never if they did not.
                if let Err(err) = unsafe { self.driver.destroy_event(event) } {
                    tracing::warn!("destroying an event of cuda:{}: {err}", event.device);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libraries_this_process_has_loaded() {
        // Every test binary links libtorch_cpu.so.
        let dir = loaded_library_dir(CPU_LIBRARY_NAME).expect("libtorch_cpu.so is loaded");
        assert!(dir.join(CPU_LIBRARY_NAME).exists(), "{}", dir.display());
        assert!(loaded_library_dir("libnot-a-library.so").is_none());
    }
}
