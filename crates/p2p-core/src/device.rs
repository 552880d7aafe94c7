//! What we know of one device, and what the driver claims of one ordered pair.

use serde::{Deserialize, Serialize};

/// One visible GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Ordinal in visible order (`cuda:N`).
    pub ordinal: usize,
    /// The marketing name the driver reports (`NVIDIA H200`, ...).
    pub name: String,
    /// `GPU-xxxxxxxx-...`, stable across reboots and `CUDA_VISIBLE_DEVICES`.
    pub uuid: String,
    /// PCI address, `dddd:bb:dd.f`.
    pub pci_bus_id: String,
    /// Compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// Device memory, in bytes.
    pub total_memory_bytes: u64,
    /// Asynchronous copy engines (`CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT`).
    pub copy_engines: u32,
}

/// What the driver says about peer access from `from` to `to`: a claim, which
/// the probe then checks with a real copy (on many machines the claim is wrong).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerClaim {
    /// The device whose context reaches the peer's memory (the copy's source).
    pub from: usize,
    /// The device whose memory is reached (the copy's destination).
    pub to: usize,
    /// `cuDeviceCanAccessPeer`.
    pub can_access_peer: bool,
    /// `CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED`.
    pub access_supported: bool,
    /// `CU_DEVICE_P2P_ATTRIBUTE_PERFORMANCE_RANK` (lower is better).
    pub performance_rank: i32,
    /// `CU_DEVICE_P2P_ATTRIBUTE_NATIVE_ATOMIC_SUPPORTED`.
    pub native_atomics: bool,
}

impl PeerClaim {
    /// The driver claims direct peer copy works for this direction (both
    /// `can_access_peer` and `access_supported`).
    pub fn claimed(&self) -> bool {
        self.can_access_peer && self.access_supported
    }
}
