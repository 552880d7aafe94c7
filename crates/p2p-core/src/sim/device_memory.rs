//! Simulated device memory: allocations at made-up addresses, each backed by a host block; freed addresses are reused, most recently freed first.
//!
//! Addresses look like CUDA's unified address space: every device has its
//! own range (so a pointer used with the wrong device ordinal is caught), and
//! allocations are 256-byte aligned with a 256-byte gap between them (so an
//! off-by-one overrun is an error instead of a write into the neighbour).
//! A freed slot goes on a stack; the next allocation that fits takes the
//! most recently freed one, so code that frees too early sees its memory
//! reused under it, as with CUDA's caching allocators.

use std::collections::BTreeMap;

use super::host_memory::HostBlock;
use crate::{AllocKind, Error, Result};

/// First address handed out on device 0.
pub(crate) const FIRST_DEVICE_ADDRESS: u64 = 0x1000_0000;
/// Distance between the address ranges of consecutive devices (1 TiB).
pub(crate) const DEVICE_ADDRESS_STRIDE: u64 = 1 << 40;
/// Alignment of every allocation, like `cuMemAlloc`.
pub(crate) const DEVICE_ALLOC_ALIGN: u64 = 256;
/// What freed memory holds (repeating), and so what a reused address holds
/// when it is handed out again.
pub const POISON: [u8; 8] = [0xde, 0xad, 0xbe, 0xef, 0xf0, 0x0d, 0xfa, 0xce];

#[derive(Debug)]
pub(super) struct Allocation {
    pub(super) block: HostBlock,
    pub(super) kind: AllocKind,
    /// Address space the allocation occupies (its size rounded up, or the
    /// whole reused slot), given back on free.
    span: u64,
}

/// One device's allocations, keyed by base address.
#[derive(Debug)]
pub(super) struct DeviceMemory {
    ordinal: usize,
    capacity_bytes: u64,
    used_bytes: u64,
    next_addr: u64,
    allocations: BTreeMap<u64, Allocation>,
    /// Freed slots `(address, span)`, most recently freed last.
    freed: Vec<(u64, u64)>,
}

/// Freed slots remembered per device for reuse (older ones are forgotten).
const MAX_FREED_SLOTS: usize = 256;

impl DeviceMemory {
    pub(super) fn new(ordinal: usize, capacity_bytes: u64) -> DeviceMemory {
        DeviceMemory {
            ordinal,
            capacity_bytes,
            used_bytes: 0,
            next_addr: FIRST_DEVICE_ADDRESS + ordinal as u64 * DEVICE_ADDRESS_STRIDE,
            allocations: BTreeMap::new(),
            freed: Vec::new(),
        }
    }

    /// Allocates `bytes` (may be 0, which still gets its own non-zero
    /// address). Fresh address space holds `garbage` repeated; a reused slot
    /// holds [`POISON`], what its previous owner left.
    pub(super) fn alloc(&mut self, bytes: usize, kind: AllocKind, garbage: u64) -> Result<u64> {
        let out_of_memory = || Error::OutOfMemory {
            place: format!("cuda:{}", self.ordinal),
            bytes,
        };
        let wanted = bytes as u64;
        if self.used_bytes.saturating_add(wanted) > self.capacity_bytes {
            return Err(out_of_memory());
        }
        let needed = wanted.max(1).div_ceil(DEVICE_ALLOC_ALIGN) * DEVICE_ALLOC_ALIGN;
        // Most recently freed first; a slot much larger than needed is left
        // for a bigger allocation.
        let reuse = self
            .freed
            .iter()
            .rposition(|&(_, span)| span >= needed && span <= needed.saturating_mul(2));
        let (addr, span, fill) = match reuse {
            Some(index) => {
                let (addr, span) = self.freed.remove(index);
                (addr, span, u64::from_le_bytes(POISON))
            }
            None => (self.next_addr, needed, garbage),
        };
        let block = HostBlock::filled(bytes, fill).ok_or_else(out_of_memory)?;
        if reuse.is_none() {
            self.next_addr += span + DEVICE_ALLOC_ALIGN;
        }
        self.used_bytes += wanted;
        self.allocations
            .insert(addr, Allocation { block, kind, span });
        Ok(addr)
    }

    /// Frees the allocation that starts at `addr` and returns its length;
    /// `None` if there is none.
    pub(super) fn free(&mut self, addr: u64) -> Option<usize> {
        let allocation = self.allocations.remove(&addr)?;
        let len = allocation.block.len();
        self.used_bytes -= len as u64;
        if self.freed.len() == MAX_FREED_SLOTS {
            self.freed.remove(0);
        }
        self.freed.push((addr, allocation.span));
        Some(len)
    }

    /// The allocation holding `[addr, addr + bytes)` and the offset of `addr` in it.
    fn find(&self, addr: u64, bytes: usize) -> Option<(u64, usize)> {
        let (&base, allocation) = self.allocations.range(..=addr).next_back()?;
        let offset = usize::try_from(addr - base).ok()?;
        let end = offset.checked_add(bytes)?;
        (end <= allocation.block.len()).then_some((base, offset))
    }

    /// Whether `[addr, addr + bytes)` lies inside one live allocation.
    pub(super) fn contains(&self, addr: u64, bytes: usize) -> bool {
        self.find(addr, bytes).is_some()
    }

    /// Base and length of the live allocation that starts at `addr`.
    pub(super) fn allocation_at(&self, addr: u64) -> Option<(u64, usize)> {
        self.allocations
            .get(&addr)
            .map(|allocation| (addr, allocation.block.len()))
    }

    /// How the allocation holding `addr` was made.
    pub(super) fn kind_of(&self, addr: u64) -> Option<AllocKind> {
        let (base, _) = self.find(addr, 0)?;
        self.allocations
            .get(&base)
            .map(|allocation| allocation.kind)
    }

    pub(super) fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (base, offset) = self.find(addr, len)?;
        let allocation = self.allocations.get(&base)?;
        allocation.block.as_slice().get(offset..offset + len)
    }

    pub(super) fn bytes_mut(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let (base, offset) = self.find(addr, len)?;
        let allocation = self.allocations.get_mut(&base)?;
        allocation
            .block
            .as_mut_slice()
            .get_mut(offset..offset + len)
    }

    pub(super) fn live_allocations(&self) -> usize {
        self.allocations.len()
    }
}

/// `len` bytes of [`POISON`]: what a read of freed memory delivers.
pub(super) fn poison(len: usize) -> Vec<u8> {
    POISON.iter().copied().cycle().take(len).collect()
}
