//! What a move reads from and writes to: raw byte ranges, and the traits that expose them.
//!
//! The executor works on addresses, so that buffers of any framework can be
//! moved without copying them into ours. The traits are `unsafe` to implement:
//! the implementor vouches that the address and length describe live memory.

use p2p_core::memory::{DeviceBuffer, PinnedBuffer};
use p2p_core::{DeviceAddr, Location};

/// The address of a contiguous byte range, in device or host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawBytes {
    /// Device memory (any allocator: `cuMemAlloc`, stream-ordered pools, PyTorch).
    Device(DeviceAddr),
    /// Host memory.
    Host {
        /// The first byte.
        ptr: *mut u8,
        /// Page-locked, so the GPU can DMA it directly.
        pinned: bool,
    },
}

impl RawBytes {
    /// Where the range lives: the device of a device address, or the host.
    pub fn location(&self) -> Location {
        match self {
            RawBytes::Device(ptr) => Location::Cuda(ptr.device),
            RawBytes::Host { .. } => Location::Host,
        }
    }
}

/// Bytes a move can read.
///
/// # Safety
/// `raw_bytes()` must describe `byte_len()` readable bytes that stay valid,
/// and are not written by anyone else, while `self` is borrowed.
pub unsafe trait MoveSource {
    /// The address of the first byte.
    fn raw_bytes(&self) -> RawBytes;
    /// How many bytes the source holds (all of them are read).
    fn byte_len(&self) -> usize;
    /// Where the bytes live; derived from [`MoveSource::raw_bytes`].
    fn location(&self) -> Location {
        self.raw_bytes().location()
    }
}

/// Bytes a move can write.
///
/// # Safety
/// `raw_bytes_mut()` must describe `byte_len()` writable bytes that stay
/// valid, and are not read or written by anyone else, while `self` is
/// mutably borrowed.
pub unsafe trait MoveTarget: MoveSource {
    /// The address of the first byte, for writing (the same range as
    /// [`MoveSource::raw_bytes`]).
    fn raw_bytes_mut(&mut self) -> RawBytes;
}

// SAFETY: a DeviceBuffer owns `len` bytes of device memory at `ptr` until dropped.
unsafe impl MoveSource for DeviceBuffer {
    fn raw_bytes(&self) -> RawBytes {
        RawBytes::Device(self.ptr())
    }
    fn byte_len(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; `&mut self` makes the access exclusive.
unsafe impl MoveTarget for DeviceBuffer {
    fn raw_bytes_mut(&mut self) -> RawBytes {
        RawBytes::Device(self.ptr())
    }
}

// SAFETY: a PinnedBuffer owns `len` bytes of page-locked host memory until dropped.
unsafe impl MoveSource for PinnedBuffer {
    fn raw_bytes(&self) -> RawBytes {
        RawBytes::Host {
            ptr: self.as_ptr().cast_mut(),
            pinned: true,
        }
    }
    fn byte_len(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; `&mut self` makes the access exclusive.
unsafe impl MoveTarget for PinnedBuffer {
    fn raw_bytes_mut(&mut self) -> RawBytes {
        RawBytes::Host {
            ptr: self.as_mut_ptr(),
            pinned: true,
        }
    }
}

// SAFETY: a slice of plain-old-data values is `size_of_val` readable bytes
// for as long as it is borrowed (`Pod`: no padding, any bytes valid); the
// executor never writes through a source.
unsafe impl<T: bytemuck::Pod> MoveSource for [T] {
    fn raw_bytes(&self) -> RawBytes {
        RawBytes::Host {
            ptr: self.as_ptr().cast::<u8>().cast_mut(),
            pinned: false,
        }
    }
    fn byte_len(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

// SAFETY: a mutable slice of `Pod` values is exclusively borrowed writable
// bytes, and any bytes written make valid values.
unsafe impl<T: bytemuck::Pod> MoveTarget for [T] {
    fn raw_bytes_mut(&mut self) -> RawBytes {
        RawBytes::Host {
            ptr: self.as_mut_ptr().cast::<u8>(),
            pinned: false,
        }
    }
}

// SAFETY: delegates to the slice impl over the vector's initialised values.
unsafe impl<T: bytemuck::Pod> MoveSource for Vec<T> {
    fn raw_bytes(&self) -> RawBytes {
        self.as_slice().raw_bytes()
    }
    fn byte_len(&self) -> usize {
        self.as_slice().byte_len()
    }
}

// SAFETY: delegates to the slice impl over the vector's initialised values.
unsafe impl<T: bytemuck::Pod> MoveTarget for Vec<T> {
    fn raw_bytes_mut(&mut self) -> RawBytes {
        self.as_mut_slice().raw_bytes_mut()
    }
}

/// A byte range known only by its address: for adapters (PyTorch tensors,
/// `cudarc` slices) whose memory this crate does not own.
#[derive(Clone, Copy, Debug)]
pub struct RawRange {
    raw: RawBytes,
    len: usize,
}

impl RawRange {
    /// # Safety
    /// `raw` must describe `len` bytes that stay valid for every move this
    /// range is passed to, until that move is complete; when used as a
    /// target, nobody else may access them meanwhile.
    pub unsafe fn new(raw: RawBytes, len: usize) -> RawRange {
        RawRange { raw, len }
    }
}

// SAFETY: the constructor's contract is exactly the trait's.
unsafe impl MoveSource for RawRange {
    fn raw_bytes(&self) -> RawBytes {
        self.raw
    }
    fn byte_len(&self) -> usize {
        self.len
    }
}

// SAFETY: the constructor's contract is exactly the trait's.
unsafe impl MoveTarget for RawRange {
    fn raw_bytes_mut(&mut self) -> RawBytes {
        self.raw
    }
}
