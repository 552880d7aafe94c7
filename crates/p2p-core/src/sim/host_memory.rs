//! The simulated backend's only raw-pointer code: owned host blocks and copies to and from caller pointers.
//!
//! Everything else in `sim` works on safe slices. Simulated device memory and
//! pinned host memory are both [`HostBlock`]s; the difference is only that a
//! pinned block's address is handed to the caller, so this module never makes
//! a reference to a pinned block's bytes.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every block: the widest vector loads a caller might use on pinned memory.
pub(super) const BLOCK_ALIGN: usize = 64;

/// Zero-filled host memory owned by this value, freed on drop.
pub(super) struct HostBlock {
    ptr: NonNull<u8>,
    layout: Layout,
    len: usize,
}

// SAFETY: a HostBlock owns its memory exclusively (like a `Box<[u8]>`); the raw
// pointer is only what makes it non-Send by default.
unsafe impl Send for HostBlock {}
// SAFETY: `&HostBlock` only gives out `&[u8]` or a raw address; writes need `&mut`.
unsafe impl Sync for HostBlock {}

impl HostBlock {
    /// `len` zeroed bytes (zero-length blocks still get one byte, so the
    /// address is real and unique), or `None` if the allocator refuses.
    pub(super) fn zeroed(len: usize) -> Option<HostBlock> {
        let layout = Layout::from_size_align(len.max(1), BLOCK_ALIGN).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw)?;
        Some(HostBlock { ptr, layout, len })
    }

    /// The block's address, for handing out as pinned memory.
    pub(super) fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live, initialised (zeroed) allocation of at least
        // `len` bytes owned by self, and `&self` rules out a concurrent `&mut`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for HostBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBlock").field("len", &self.len).finish()
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with exactly this layout and is freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Copies `src` to the caller's host memory at `dst`.
///
/// # Safety
/// `dst` is valid for `src.len()` writes (it may overlap nothing we hold a
/// reference to other than `src` itself, which `ptr::copy` tolerates).
pub(super) unsafe fn copy_to_host(dst: *mut u8, src: &[u8]) {
    // SAFETY: `src` is a live slice; the caller promises `dst` is writable for
    // `src.len()` bytes. `ptr::copy` allows the two ranges to overlap.
    unsafe { std::ptr::copy(src.as_ptr(), dst, src.len()) }
}

/// Copies `dst.len()` bytes from the caller's host memory at `src` into `dst`.
///
/// # Safety
/// `src` is valid for `dst.len()` reads.
pub(super) unsafe fn copy_from_host(dst: &mut [u8], src: *const u8) {
    // SAFETY: `dst` is a live, exclusive slice; the caller promises `src` is
    // readable for `dst.len()` bytes. `ptr::copy` allows the ranges to overlap.
    unsafe { std::ptr::copy(src, dst.as_mut_ptr(), dst.len()) }
}
