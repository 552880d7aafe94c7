//! Finding the driver library without calling into it.
//!
//! cudarc's run-time loading panics when the library or a symbol is missing,
//! and its own presence check exists only with `dynamic-loading`, which a
//! user who links (`dynamic-linking`) does not have. So the backend opens the
//! library itself, by names cudarc also tries (so "found here" implies
//! "found by cudarc"), and looks symbols up there. Under dynamic linking the
//! library is already loaded with the program, and opening it again only
//! takes a reference.

use std::ffi::{c_void, CStr};
use std::sync::OnceLock;

/// Library names, in the order cudarc tries them, restricted to the ones a
/// driver installs (`libcuda.so` is the development link, `.so.1` the driver's).
#[cfg(windows)]
const CANDIDATES: &[&str] = &["nvcuda.dll"];
#[cfg(not(windows))]
const CANDIDATES: &[&str] = &["libcuda.so", "libcuda.so.1"];

/// The opened library, or `None` when no candidate loads (opened once per process).
fn library() -> Option<&'static libloading::Library> {
    static LIBRARY: OnceLock<Option<libloading::Library>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            CANDIDATES.iter().find_map(|name| {
                // SAFETY: loading libcuda runs its initialisers, which any use
                // of the driver runs anyway; the handle lives for the process.
                unsafe { libloading::Library::new(*name) }.ok()
            })
        })
        .as_ref()
}

/// Whether a CUDA driver library can be loaded.
pub(in crate::cuda) fn library_present() -> bool {
    library().is_some()
}

/// Whether the driver library exports `name` (for calls newer than the
/// oldest driver we accept: calling a missing one would panic in cudarc).
pub(in crate::cuda) fn has_symbol(name: &CStr) -> bool {
    library().is_some_and(|library| {
        // SAFETY: looking a symbol up (`dlsym`) has no other effect, and the
        // pointer type is never used to call anything.
        unsafe { library.get::<*const c_void>(name.to_bytes_with_nul()) }.is_ok()
    })
}
