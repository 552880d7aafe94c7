//! Virtual time of the simulated machine: how long each operation takes, and how far a failed poll moves the host's clock.
//!
//! Work is *timed* on a virtual clock in nanoseconds so that benchmarks,
//! the thorough probe and deadlines see believable speeds without sleeping.
//! Each stream has a clock; so does the host, which stands for "now" from
//! the caller's side: an operation starts at the later of its stream's clock
//! and the host's clock when it was queued, and the host clock moves
//! forward when the caller synchronizes a stream, sees work done, or waits.
//! That way a sequence "copy, synchronize, copy on another stream" takes the
//! sum of the two copies, while two streams chained only by events overlap.

/// Launch latency of a copy between two devices (direct or staged by the driver).
pub const PEER_LAUNCH_NS: u64 = 5_000;
/// Launch latency of a copy between a device and host memory.
pub const HOST_LAUNCH_NS: u64 = 8_000;
/// Launch latency of work inside one device (a memset, a same-device copy).
pub const LOCAL_LAUNCH_NS: u64 = 2_000;
/// Speed of work inside one device, in GB/s.
pub const LOCAL_GBPS: f64 = 1000.0;
/// How much slower a direct peer copy is when it touches stream-ordered pool
/// memory that the other device has not been granted (38 vs 394 GB/s measured on H200s).
pub const UNGRANTED_POOL_SLOWDOWN: f64 = 10.0;
/// Virtual time that passes for the host at each completion query that
/// answers "not yet" (the time a polling caller would spend per poll).
pub const POLL_NS: u64 = 20_000;

/// Virtual time an operation of `bytes` at `gbps` takes, launch included.
pub(super) fn duration_ns(bytes: usize, gbps: f64, launch_ns: u64) -> u64 {
    // 1 GB/s is one byte per nanosecond.
    // The cast saturates, so a nonsensical speed gives a long time, not a panic.
    launch_ns.saturating_add((bytes as f64 / gbps).ceil() as u64)
}

/// Virtual nanoseconds in `ms` milliseconds (saturating).
pub(super) fn ms_to_ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}
