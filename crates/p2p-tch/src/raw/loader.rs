//! The crate's only FFI: loading `libtorch_cuda.so` and asking PyTorch for
//! its current CUDA streams.
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

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LAZY};
use p2p_core::StreamId;

/// The library that holds PyTorch's CUDA code.
const LIBRARY_NAME: &str = "libtorch_cuda.so";
/// Where it usually lies: next to this one, which tch links.
const CPU_LIBRARY_NAME: &str = "libtorch_cpu.so";
const CURRENT_STREAM_SYMBOL: &[u8] = b"aoti_torch_get_current_cuda_stream\0";

/// `aoti_torch_get_current_cuda_stream`; 0 is `AOTI_TORCH_SUCCESS`.
type CurrentStreamFn = unsafe extern "C" fn(device_index: i32, ret_stream: *mut *mut c_void) -> i32;

/// Why `libtorch_cuda.so` could not be used: a value, kept in a static and
/// reported again on every call (hence `Arc` around libloading's error,
/// which is not `Clone`).
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// No candidate file could be opened.
    #[error(
        "{LIBRARY_NAME} could not be loaded ({}): this PyTorch is a CPU-only build, or its \
         `torch/lib` folder is not on LD_LIBRARY_PATH",
        attempts_text(.attempts)
    )]
    NotLoaded {
        /// Each file tried, with why it did not open.
        attempts: Vec<(String, Arc<libloading::Error>)>,
    },
    /// The library opened but lacks the stream symbol.
    #[error(
        "{library} has no `aoti_torch_get_current_cuda_stream` ({source}): \
         this PyTorch is too old; p2p-tch is built for PyTorch 2.11"
    )]
    TooOld {
        /// The file that opened.
        library: String,
        /// libloading's error for the symbol.
        source: Arc<libloading::Error>,
    },
    /// A device ordinal that does not fit PyTorch's `int` device index.
    #[error("cuda:{device} is out of range for PyTorch's device index")]
    OrdinalOutOfRange {
        /// The ordinal asked for.
        device: usize,
    },
    /// PyTorch's stream query returned an error code.
    #[error("PyTorch could not give the current stream of cuda:{device} (error {code})")]
    CurrentStream {
        /// The device asked about.
        device: usize,
        /// PyTorch's `AOTITorchError` code (non-zero).
        code: i32,
    },
}

/// `file: why; file: why`, for [`LoadError::NotLoaded`]'s message.
fn attempts_text(attempts: &[(String, Arc<libloading::Error>)]) -> String {
    let parts: Vec<String> = attempts
        .iter()
        .map(|(file, err)| format!("{file}: {err}"))
        .collect();
    parts.join("; ")
}

/// `libtorch_cuda.so`, loaded for the life of the process.
#[derive(Debug)]
pub(crate) struct TorchCuda {
    /// The file that was loaded, for messages.
    pub(crate) path: String,
    current_stream: CurrentStreamFn,
    /// Never dropped (it lives in a static): the function pointer above stays valid.
    _library: Library,
}

static TORCH_CUDA: OnceLock<Result<TorchCuda, LoadError>> = OnceLock::new();

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
pub(crate) fn torch_cuda() -> Result<&'static TorchCuda, LoadError> {
    TORCH_CUDA
        .get_or_init(load_torch_cuda)
        .as_ref()
        .map_err(Clone::clone)
}

fn load_torch_cuda() -> Result<TorchCuda, LoadError> {
    let mut candidates = vec![LIBRARY_NAME.to_owned()];
    if let Some(dir) = loaded_library_dir(CPU_LIBRARY_NAME) {
        candidates.push(dir.join(LIBRARY_NAME).to_string_lossy().into_owned());
    }
    let mut attempts = Vec::new();
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
                attempts.push((candidate, Arc::new(err)));
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
                return Err(LoadError::TooOld {
                    library: candidate,
                    source: Arc::new(err),
                })
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
    Err(LoadError::NotLoaded { attempts })
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
    pub(crate) fn current_stream(&self, device: usize) -> Result<StreamId, LoadError> {
        let index = i32::try_from(device).map_err(|_| LoadError::OrdinalOutOfRange { device })?;
        let mut stream: *mut c_void = std::ptr::null_mut();
        // SAFETY: a function of the loaded (never unloaded) library with this
        // signature; it writes one pointer through `ret_stream`, which points
        // to a live local, and turns C++ exceptions into a non-zero code.
        let code = unsafe { (self.current_stream)(index, &mut stream) };
        if code != 0 {
            return Err(LoadError::CurrentStream { device, code });
        }
        Ok(StreamId {
            device,
            raw: stream as usize as u64,
        })
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
