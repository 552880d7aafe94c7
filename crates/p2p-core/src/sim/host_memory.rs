//! The simulated backend's raw-pointer code: owned host blocks, pinned memory with reuse, and copies to and from caller pointers.
//!
//! Everything else in `sim` works on safe slices. Simulated device memory and
//! pinned host memory are both [`HostBlock`]s; the difference is only that a
//! pinned block's address is handed to the caller, so this module never makes
//! a reference to a pinned block's bytes.

use std::alloc::{self, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;

use super::device_memory::POISON;

/// Alignment of every block: the widest vector loads a caller might use on pinned memory.
pub(super) const BLOCK_ALIGN: usize = 64;

/// Host memory owned by this value, always initialised, freed on drop.
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

/// Writes `word`'s bytes (little-endian) over and over into `len` bytes at `ptr`.
///
/// # Safety
/// `ptr` is valid for `len` writes and nothing holds a reference to those bytes.
unsafe fn fill_raw(ptr: *mut u8, len: usize, word: u64) {
    let bytes = word.to_le_bytes();
    for chunk_start in (0..len).step_by(bytes.len()) {
        let n = bytes.len().min(len - chunk_start);
        // SAFETY: `chunk_start + n <= len`, inside the caller's range; the
        // source is a local array of at least `n` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.add(chunk_start), n) };
    }
}

impl HostBlock {
    /// `len` bytes holding `word` repeated (garbage, or poison), or `None`
    /// if the allocator refuses.
    pub(super) fn filled(len: usize, word: u64) -> Option<HostBlock> {
        let layout = Layout::from_size_align(len.max(1), BLOCK_ALIGN).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc(layout) };
        let ptr = NonNull::new(raw)?;
        // SAFETY: the allocation is ours, `layout.size() >= len`, and no
        // reference to it exists yet.
        unsafe { fill_raw(ptr.as_ptr(), layout.size(), word) };
        Some(HostBlock { ptr, layout, len })
    }

    /// The block's address, for handing out as pinned memory.
    pub(super) fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes the block really has (at least `len`).
    fn capacity(&self) -> usize {
        self.layout.size()
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live, initialised allocation of at least `len`
        // bytes owned by self, and `&self` rules out a concurrent `&mut`.
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
        // SAFETY: `ptr` came from `alloc` with exactly this layout and is freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// What a host address range is, as far as the simulator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HostKind {
    /// Inside a live pinned allocation.
    Pinned,
    /// Inside a pinned allocation that has been freed (the block is kept, poisoned, for reuse).
    FreedPinned,
    /// Anything else: the caller's pageable memory.
    Pageable,
}

/// Freed pinned blocks kept for reuse (older ones go back to the allocator).
const MAX_FREED_BLOCKS: usize = 64;

/// Pinned host memory: live blocks by address, and freed ones kept, poisoned, for reuse.
#[derive(Debug, Default)]
pub(super) struct PinnedMemory {
    /// Address -> (block, the length the caller asked for).
    live: BTreeMap<usize, (HostBlock, usize)>,
    /// Most recently freed last.
    freed: Vec<HostBlock>,
}

impl PinnedMemory {
    /// `bytes` of pinned memory: the most recently freed block that fits
    /// (holding [`POISON`]), else a fresh one holding `garbage` repeated.
    pub(super) fn alloc(&mut self, bytes: usize, garbage: u64) -> Option<*mut u8> {
        let wanted = bytes.max(1);
        let reuse = self.freed.iter().rposition(|block| {
            block.capacity() >= wanted && block.capacity() <= wanted.saturating_mul(2)
        });
        let block = match reuse {
            Some(index) => self.freed.remove(index),
            None => HostBlock::filled(bytes, garbage)?,
        };
        let ptr = block.as_mut_ptr();
        self.live.insert(ptr as usize, (block, bytes));
        Some(ptr)
    }

    /// Frees the block at `ptr` and returns its length; `None` if `ptr` is not one.
    pub(super) fn free(&mut self, ptr: *mut u8) -> Option<usize> {
        let (block, len) = self.live.remove(&(ptr as usize))?;
        // SAFETY: the block is ours and no longer handed out; the caller
        // promised (free_pinned's contract) not to touch it any more.
        unsafe {
            fill_raw(
                block.as_mut_ptr(),
                block.capacity(),
                u64::from_le_bytes(POISON),
            )
        };
        if self.freed.len() == MAX_FREED_BLOCKS {
            self.freed.remove(0);
        }
        self.freed.push(block);
        Some(len)
    }

    /// The length the caller asked for of the live block at `addr`.
    pub(super) fn len_at(&self, addr: usize) -> Option<usize> {
        self.live.get(&addr).map(|&(_, len)| len)
    }

    pub(super) fn live_count(&self) -> usize {
        self.live.len()
    }

    /// What `[addr, addr + len)` is (by where it starts).
    pub(super) fn classify(&self, addr: usize) -> HostKind {
        let inside = |base: usize, size: usize| addr >= base && addr < base + size.max(1);
        if let Some((&base, (_, len))) = self.live.range(..=addr).next_back() {
            if inside(base, *len) {
                return HostKind::Pinned;
            }
        }
        if self
            .freed
            .iter()
            .any(|block| inside(block.as_mut_ptr() as usize, block.capacity()))
        {
            return HostKind::FreedPinned;
        }
        HostKind::Pageable
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
