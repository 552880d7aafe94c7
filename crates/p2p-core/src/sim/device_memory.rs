//! Simulated device memory: allocations at made-up addresses, each backed by a host block.
//!
//! Addresses look like CUDA's unified address space: every device has its
//! own range (so a pointer used with the wrong device ordinal is caught), and
//! allocations are 256-byte aligned with a 256-byte gap between them (so an
//! off-by-one overrun is an error instead of a write into the neighbour).

use std::collections::BTreeMap;

use super::host_memory::HostBlock;
use crate::{AllocKind, Error, Result};

/// First address handed out on device 0.
pub const FIRST_DEVICE_ADDRESS: u64 = 0x1000_0000;
/// Distance between the address ranges of consecutive devices (1 TiB).
pub const DEVICE_ADDRESS_STRIDE: u64 = 1 << 40;
/// Alignment of every allocation, like `cuMemAlloc`.
pub const DEVICE_ALLOC_ALIGN: u64 = 256;

#[derive(Debug)]
pub(super) struct Allocation {
    pub(super) block: HostBlock,
    pub(super) kind: AllocKind,
}

/// One device's allocations, keyed by base address.
#[derive(Debug)]
pub(super) struct DeviceMemory {
    ordinal: usize,
    capacity_bytes: u64,
    used_bytes: u64,
    next_addr: u64,
    allocations: BTreeMap<u64, Allocation>,
}

impl DeviceMemory {
    pub(super) fn new(ordinal: usize, capacity_bytes: u64) -> DeviceMemory {
        DeviceMemory {
            ordinal,
            capacity_bytes,
            used_bytes: 0,
            next_addr: FIRST_DEVICE_ADDRESS + ordinal as u64 * DEVICE_ADDRESS_STRIDE,
            allocations: BTreeMap::new(),
        }
    }

    /// Allocates `bytes` (zeroed; may be 0, which still gets its own non-zero address).
    pub(super) fn alloc(&mut self, bytes: usize, kind: AllocKind) -> Result<u64> {
        let out_of_memory = || Error::OutOfMemory {
            place: format!("cuda:{}", self.ordinal),
            bytes,
        };
        let wanted = bytes as u64;
        if self.used_bytes.saturating_add(wanted) > self.capacity_bytes {
            return Err(out_of_memory());
        }
        let block = HostBlock::zeroed(bytes).ok_or_else(out_of_memory)?;
        let addr = self.next_addr;
        let span = wanted.max(1).div_ceil(DEVICE_ALLOC_ALIGN) * DEVICE_ALLOC_ALIGN;
        self.next_addr += span + DEVICE_ALLOC_ALIGN;
        self.used_bytes += wanted;
        self.allocations.insert(addr, Allocation { block, kind });
        Ok(addr)
    }

    /// Frees the allocation that starts at `addr`; `None` if there is none.
    pub(super) fn free(&mut self, addr: u64) -> Option<()> {
        let allocation = self.allocations.remove(&addr)?;
        self.used_bytes -= allocation.block.len() as u64;
        Some(())
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
