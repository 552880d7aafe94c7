//! The first `len` bytes of a [`DeviceBuffer`] as a move's source or target,
//! so every size is measured on the same (largest) buffers.
//!
//! `p2p-move` can move whole `DeviceBuffer`s, or [`p2p_move::RawRange`]s
//! whose lifetime nobody checks; these borrow the buffer instead, so the
//! borrow checker keeps it alive and unaliased for as long as the range is used.

use p2p_core::memory::DeviceBuffer;
use p2p_move::{MoveSource, MoveTarget, RawBytes};

/// The first `len` bytes of a buffer, to read from.
#[derive(Clone, Copy, Debug)]
pub struct DeviceRange<'a> {
    buffer: &'a DeviceBuffer,
    len: usize,
}

impl<'a> DeviceRange<'a> {
    /// # Panics
    /// If `len` is beyond the end of `buffer` (a bug in the benchmark).
    pub fn new(buffer: &'a DeviceBuffer, len: usize) -> Self {
        assert!(
            len <= buffer.len(),
            "range of {len} bytes in a buffer of {}",
            buffer.len()
        );
        DeviceRange { buffer, len }
    }
}

// SAFETY: the shared borrow keeps the buffer (which owns its device memory
// until dropped) alive and unwritten through safe code for the range's
// lifetime, and `len` is within it (checked in `new`).
unsafe impl MoveSource for DeviceRange<'_> {
    fn raw_bytes(&self) -> RawBytes {
        RawBytes::Device(self.buffer.ptr())
    }
    fn byte_len(&self) -> usize {
        self.len
    }
}

/// The first `len` bytes of a buffer, to write to.
#[derive(Debug)]
pub struct DeviceRangeMut<'a> {
    buffer: &'a mut DeviceBuffer,
    len: usize,
}

impl<'a> DeviceRangeMut<'a> {
    /// # Panics
    /// If `len` is beyond the end of `buffer` (a bug in the benchmark).
    pub fn new(buffer: &'a mut DeviceBuffer, len: usize) -> Self {
        assert!(
            len <= buffer.len(),
            "range of {len} bytes in a buffer of {}",
            buffer.len()
        );
        DeviceRangeMut { buffer, len }
    }
}

// SAFETY: the exclusive borrow keeps the buffer alive and untouched by anyone
// else for the range's lifetime, and `len` is within it (checked in `new`).
unsafe impl MoveSource for DeviceRangeMut<'_> {
    fn raw_bytes(&self) -> RawBytes {
        RawBytes::Device(self.buffer.ptr())
    }
    fn byte_len(&self) -> usize {
        self.len
    }
}

// SAFETY: as for `MoveSource` above; the borrow is exclusive, so writes race with nobody.
unsafe impl MoveTarget for DeviceRangeMut<'_> {
    fn raw_bytes_mut(&mut self) -> RawBytes {
        RawBytes::Device(self.buffer.ptr())
    }
}
