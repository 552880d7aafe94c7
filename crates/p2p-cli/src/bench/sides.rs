//! The memory of one cell: each copy's source and destination (device, pinned or pageable), its pattern, and the byte-for-byte check.

use std::fmt;
use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::pattern;
use p2p_core::{AllocKind, Driver};
use p2p_move::{MoveSource, MoveTarget};

use super::raw;

/// Where one side of a copy lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Device(usize),
    Pinned,
    Pageable,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Device(d) => write!(f, "cuda:{d}"),
            Place::Pinned => f.write_str("pinned host memory"),
            Place::Pageable => f.write_str("pageable host memory"),
        }
    }
}

/// One side's memory. Device memory comes with a stream of its device for
/// filling, poisoning and reading it back.
#[derive(Debug)]
pub(super) enum Side {
    Device(DeviceBuffer, Stream),
    Pinned(PinnedBuffer),
    Pageable(Vec<u8>),
}

impl Side {
    fn alloc(driver: &Arc<dyn Driver>, place: Place, len: usize) -> p2p_core::Result<Side> {
        Ok(match place {
            Place::Device(device) => Side::Device(
                DeviceBuffer::new(driver, device, len, AllocKind::Plain)?,
                Stream::new(driver, device)?,
            ),
            Place::Pinned => Side::Pinned(PinnedBuffer::new(driver, len)?),
            Place::Pageable => Side::Pageable(host_bytes(len, 0)?),
        })
    }

    fn fill(&mut self, data: &[u8]) -> p2p_core::Result<()> {
        match self {
            Side::Device(buffer, stream) => buffer.write_from_slice(data, stream),
            Side::Pinned(buffer) => {
                buffer.as_mut_slice().copy_from_slice(data);
                Ok(())
            }
            Side::Pageable(buffer) => {
                buffer.copy_from_slice(data);
                Ok(())
            }
        }
    }

    fn poison(&mut self, driver: &dyn Driver, value: u8) -> p2p_core::Result<()> {
        match self {
            Side::Device(buffer, stream) => raw::poison(driver, buffer, value, stream),
            Side::Pinned(buffer) => {
                buffer.as_mut_slice().fill(value);
                Ok(())
            }
            Side::Pageable(buffer) => {
                buffer.fill(value);
                Ok(())
            }
        }
    }

    /// The first byte that differs from `expected`, if any.
    fn mismatch(&self, expected: &[u8]) -> p2p_core::Result<Option<(usize, u8, u8)>> {
        let first = |found: &[u8]| {
            pattern::first_mismatch(expected, found).map(|m| {
                let (want, got) = (m.expected.unwrap_or(0), m.found.unwrap_or(0));
                (m.offset, want, got)
            })
        };
        Ok(match self {
            Side::Device(buffer, stream) => first(&buffer.read_to_vec(stream)?),
            Side::Pinned(buffer) => first(buffer.as_slice()),
            Side::Pageable(buffer) => first(buffer),
        })
    }

    pub(super) fn device_buffer(&self) -> Option<&DeviceBuffer> {
        match self {
            Side::Device(buffer, _) => Some(buffer),
            _ => None,
        }
    }

    pub(super) fn source(&self) -> &dyn MoveSource {
        match self {
            Side::Device(b, _) => b,
            Side::Pinned(b) => b,
            Side::Pageable(b) => b,
        }
    }

    pub(super) fn target(&mut self) -> &mut dyn MoveTarget {
        match self {
            Side::Device(b, _) => b,
            Side::Pinned(b) => b,
            Side::Pageable(b) => b,
        }
    }
}

/// A copy that delivered wrong bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mismatch {
    pub(super) from: Place,
    pub(super) to: Place,
    /// Which copy of the cell: 0 is the warm-up.
    pub(super) iteration: usize,
    pub(super) offset: usize,
    pub(super) expected: u8,
    pub(super) found: u8,
    /// The source itself changed (the promise is the source intact, too).
    pub(super) source_changed: bool,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.source_changed {
            "the SOURCE changed"
        } else {
            "WRONG BYTES"
        };
        write!(
            f,
            "{} -> {}, copy {}: {what}: byte {} is {:#04x}, expected {:#04x}",
            self.from, self.to, self.iteration, self.offset, self.found, self.expected
        )
    }
}

/// One copy of a cell: where from, where to, and the bytes it must deliver.
#[derive(Debug)]
pub(super) struct Leg {
    pub(super) from: Place,
    pub(super) to: Place,
    pub(super) src: Side,
    pub(super) dst: Side,
    pattern: Vec<u8>,
}

/// Every copy of one cell (two when both directions run at once). If a
/// copy may still be running on the device (a wait timed out), the memory
/// is leaked on drop instead of freed under it.
#[derive(Debug)]
pub(super) struct Legs {
    pub(super) legs: Vec<Leg>,
    pub(super) hung: bool,
    driver: Arc<dyn Driver>,
}

/// What destinations hold before each copy, alternating so that a copy
/// that writes nothing cannot pass on the previous copy's bytes.
const POISON: [u8; 2] = [0xA5, 0x5A];

impl Legs {
    /// Allocates and fills each `(from, to)` copy of `len` bytes; `seed`
    /// makes each cell's patterns its own.
    pub(super) fn new(
        driver: &Arc<dyn Driver>,
        copies: &[(Place, Place)],
        len: usize,
        seed: u64,
    ) -> p2p_core::Result<Legs> {
        let mut legs = Vec::with_capacity(copies.len());
        for (index, &(from, to)) in copies.iter().enumerate() {
            let pattern = pattern(len, seed.wrapping_mul(31).wrapping_add(index as u64))?;
            let mut src = Side::alloc(driver, from, len)?;
            src.fill(&pattern)?;
            let dst = Side::alloc(driver, to, len)?;
            legs.push(Leg {
                from,
                to,
                src,
                dst,
                pattern,
            });
        }
        Ok(Legs {
            legs,
            hung: false,
            driver: driver.clone(),
        })
    }

    /// Poisons every destination before copy number `iteration`.
    pub(super) fn poison(&mut self, iteration: usize) -> p2p_core::Result<()> {
        let value = POISON[iteration % POISON.len()];
        for leg in &mut self.legs {
            leg.dst.poison(self.driver.as_ref(), value)?;
        }
        Ok(())
    }

    /// Compares every destination with its pattern after copy number `iteration`.
    pub(super) fn check(&self, iteration: usize) -> p2p_core::Result<Vec<Mismatch>> {
        let mut found = Vec::new();
        for leg in &self.legs {
            if let Some((offset, expected, got)) = leg.dst.mismatch(&leg.pattern)? {
                found.push(Mismatch {
                    from: leg.from,
                    to: leg.to,
                    iteration,
                    offset,
                    expected,
                    found: got,
                    source_changed: false,
                });
            }
        }
        Ok(found)
    }

    /// Whether every source still holds its pattern.
    pub(super) fn check_sources(&self, iteration: usize) -> p2p_core::Result<Vec<Mismatch>> {
        let mut found = Vec::new();
        for leg in &self.legs {
            if let Some((offset, expected, got)) = leg.src.mismatch(&leg.pattern)? {
                found.push(Mismatch {
                    from: leg.from,
                    to: leg.to,
                    iteration,
                    offset,
                    expected,
                    found: got,
                    source_changed: true,
                });
            }
        }
        Ok(found)
    }
}

impl Drop for Legs {
    fn drop(&mut self) {
        if !self.hung {
            return;
        }
        tracing::warn!("a timed copy did not finish: its buffers are leaked, not freed under it");
        for leg in self.legs.drain(..) {
            for side in [leg.src, leg.dst] {
                match side {
                    Side::Device(buffer, stream) => {
                        buffer.leak();
                        stream.leak();
                    }
                    Side::Pinned(buffer) => std::mem::forget(buffer),
                    Side::Pageable(buffer) => std::mem::forget(buffer),
                }
            }
        }
    }
}

/// `len` bytes of the pattern of `seed` ([`pattern::fill`]).
fn pattern(len: usize, seed: u64) -> p2p_core::Result<Vec<u8>> {
    let mut out = host_bytes(len, 0)?;
    pattern::fill(&mut out, seed);
    Ok(out)
}

/// `len` bytes of `value` in host memory, or an out-of-memory error
/// (instead of the abort of a failed `vec!`) for a `--size` the host cannot hold.
fn host_bytes(len: usize, value: u8) -> p2p_core::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len)
        .map_err(|_| p2p_core::Error::OutOfMemory {
            place: "the host".into(),
            bytes: len,
        })?;
    bytes.resize(len, value);
    Ok(bytes)
}
