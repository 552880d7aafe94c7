//! Faults a simulated peer path can have, and what each does to the bytes of a copy.

use std::fmt;

/// What goes wrong on one direction of a simulated peer path.
///
/// A fault only acts on copies that take the direct peer path, that is after
/// `enable_peer_access` for the pair; the driver's own staging (peer access
/// not enabled) always delivers. The topology file spells these in kebab-case
/// (`none`, `zeros`, `corrupt`, `drop-tail`, `hang`, `late` with `late_ms`,
/// `enable-fails`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The path delivers every byte.
    #[default]
    None,
    /// The destination receives zeros instead of the data (dual RTX 4090s).
    Zeros,
    /// Some bits are flipped: every [`CORRUPT_STRIDE`]th byte from
    /// [`CORRUPT_FIRST_OFFSET`] is xor-ed with `0x10` (a copy shorter than
    /// that gets its first byte flipped), so every copy of one byte or more is wrong.
    Corrupt,
    /// The last quarter of the destination range (at least one byte) is never written.
    DropTail,
    /// The copy never finishes: its stream, and every stream that waits on it, hangs.
    Hang,
    /// The copy hangs, then completes (correctly) once the machine's virtual
    /// clock has passed `ms` milliseconds after it would have finished: a
    /// host wait with a shorter deadline times out, and the bytes are
    /// written late, after the caller gave up.
    Late {
        /// How long past its normal end the copy completes, in virtual milliseconds.
        ms: u64,
    },
    /// `enable_peer_access(accessor = from, owner = to)` fails with
    /// `CUDA_ERROR_PEER_ACCESS_UNSUPPORTED` although the pair is claimed.
    EnableFails,
}

/// Offset of the first byte [`Fault::Corrupt`] flips (non-zero, so that a
/// probe's "corrupt at offset N" report is seen to carry the offset).
pub const CORRUPT_FIRST_OFFSET: usize = 1234;

/// Distance between the bytes [`Fault::Corrupt`] flips (prime, so that it
/// does not line up with page or word boundaries).
pub const CORRUPT_STRIDE: usize = 4099;

impl Fault {
    /// The kebab-case name used in topology files.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Zeros => "zeros",
            Fault::Corrupt => "corrupt",
            Fault::DropTail => "drop-tail",
            Fault::Hang => "hang",
            Fault::Late { .. } => "late",
            Fault::EnableFails => "enable-fails",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Late { ms } => write!(f, "late ({ms} ms)"),
            other => f.write_str(other.name()),
        }
    }
}

/// What a faulty path does to the bytes of one copy: rewrites `data` (the
/// source bytes in flight) and returns how many leading bytes of the
/// destination get written. `Hang` and `EnableFails` do not touch bytes
/// (a hung copy is never carried out; enabling is not a copy).
pub(super) fn damage(fault: Fault, data: &mut [u8]) -> usize {
    let len = data.len();
    match fault {
        Fault::None | Fault::Hang | Fault::Late { .. } | Fault::EnableFails => len,
        Fault::Zeros => {
            data.fill(0);
            len
        }
        Fault::Corrupt => {
            let first = if len > CORRUPT_FIRST_OFFSET {
                CORRUPT_FIRST_OFFSET
            } else {
                0
            };
            for byte in data.iter_mut().skip(first).step_by(CORRUPT_STRIDE) {
                *byte ^= 0x10;
            }
            len
        }
        Fault::DropTail => len - (len / 4).max(1).min(len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_changes_every_nonempty_copy() {
        for len in [1usize, 2, 1234, 1235, 5000, 1 << 20] {
            let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut data = original.clone();
            assert_eq!(damage(Fault::Corrupt, &mut data), len);
            let changed = data.iter().zip(&original).filter(|(a, b)| a != b).count();
            assert!(changed >= 1, "len {len}");
        }
        let mut big = vec![0u8; 10_000];
        damage(Fault::Corrupt, &mut big);
        assert_eq!(big.iter().position(|&b| b != 0), Some(CORRUPT_FIRST_OFFSET));
    }

    #[test]
    fn drop_tail_keeps_three_quarters_but_always_drops_one() {
        let mut d = vec![1u8; 100];
        assert_eq!(damage(Fault::DropTail, &mut d), 75);
        assert_eq!(damage(Fault::DropTail, &mut [1u8; 1]), 0);
        assert_eq!(damage(Fault::DropTail, &mut [1u8; 3]), 2);
        assert_eq!(damage(Fault::DropTail, &mut []), 0);
    }

    #[test]
    fn zeros_and_none() {
        let mut d = vec![9u8; 10];
        assert_eq!(damage(Fault::None, &mut d), 10);
        assert_eq!(d, vec![9u8; 10]);
        assert_eq!(damage(Fault::Zeros, &mut d), 10);
        assert_eq!(d, vec![0u8; 10]);
    }
}
