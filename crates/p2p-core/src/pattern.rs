//! Byte patterns that catch wrong copies, and the first byte where two buffers differ.
//!
//! The probe copies a pattern and compares every byte; programs and tests
//! that check a copy themselves use the same two pieces:
//!
//! ```
//! use p2p_core::pattern::{self, Mismatch};
//!
//! let sent = pattern::bytes(4096, 7);
//! let mut arrived = sent.clone();
//! assert_eq!(pattern::first_mismatch(&sent, &arrived), None);
//!
//! arrived[1000] ^= 0x10; // one flipped bit
//! let mismatch = pattern::first_mismatch(&sent, &arrived).unwrap();
//! assert_eq!(mismatch.offset, 1000);
//! assert_eq!(mismatch.found, Some(sent[1000] ^ 0x10));
//! println!("{mismatch}"); // byte 1000 is 0x.., expected 0x..
//!
//! // A short copy is a mismatch too, at the first byte that is missing.
//! let short = pattern::first_mismatch(&sent, &sent[..100]).unwrap();
//! assert_eq!((short.offset, short.found), (100, None));
//! ```

use std::fmt;

/// Fills `out` with the pattern of `seed`.
///
/// Byte `i` depends on `i` and on `seed` only, so a copy that lands at the
/// wrong offset, a stale buffer, zeros, a constant and a truncated copy all
/// differ from it, and filling a prefix gives a prefix of a longer fill.
/// Each 8-byte word is a SplitMix64 output of its index mixed with the seed:
/// no short period (so a shifted copy does not match by accident), and fast
/// enough for buffers of gigabytes.
pub fn fill(out: &mut [u8], seed: u64) {
    let key = mix(seed);
    let mut words = out.chunks_exact_mut(8);
    let mut index = 0u64;
    for word in &mut words {
        word.copy_from_slice(&mix(index ^ key).to_le_bytes());
        index += 1;
    }
    let tail = words.into_remainder();
    let last = mix(index ^ key).to_le_bytes();
    tail.copy_from_slice(&last[..tail.len()]);
}

/// A new vector of `len` bytes of the pattern of `seed` (see [`fill`]).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill(&mut out, seed);
    out
}

/// SplitMix64's output function.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a buffer first differs from what was expected: see [`first_mismatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The first offset at which the two differ.
    pub offset: usize,
    /// The expected byte there; `None` when the buffer found is longer than
    /// the one expected and this offset is past the expected end.
    pub expected: Option<u8>,
    /// The byte found there; `None` when the buffer found is shorter (the
    /// copy stopped before this offset).
    pub found: Option<u8>,
}

/// The first offset where `found` differs from `expected`, or `None` when
/// both hold the same bytes. A length difference counts: where one buffer
/// is a prefix of the other, the mismatch is at the shorter one's end, with
/// `None` for the byte it lacks.
pub fn first_mismatch(expected: &[u8], found: &[u8]) -> Option<Mismatch> {
    if let Some(offset) = expected.iter().zip(found).position(|(e, f)| e != f) {
        return Some(Mismatch {
            offset,
            expected: Some(expected[offset]),
            found: Some(found[offset]),
        });
    }
    let offset = expected.len().min(found.len());
    (expected.len() != found.len()).then(|| Mismatch {
        offset,
        expected: expected.get(offset).copied(),
        found: found.get(offset).copied(),
    })
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offset = self.offset;
        match (self.expected, self.found) {
            (Some(expected), Some(found)) => {
                write!(f, "byte {offset} is {found:#04x}, expected {expected:#04x}")
            }
            (Some(expected), None) => write!(
                f,
                "byte {offset} is missing (only {offset} bytes arrived), expected {expected:#04x}"
            ),
            (None, Some(found)) => write!(
                f,
                "byte {offset} is {found:#04x}, past the end of the {offset} bytes expected"
            ),
            // `first_mismatch` never makes this one; a hand-made value still shows.
            (None, None) => write!(f, "byte {offset} differs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_depends_on_position_and_seed() {
        let a = bytes(4099, 1);
        assert_eq!(a, bytes(4099, 1));
        assert_ne!(a, bytes(4099, 2));
        assert_ne!(a[..8], a[8..16], "words differ from their neighbours");
        assert!(a.iter().any(|&b| b != a[0]), "not a constant");
        assert!(
            a.iter().filter(|&&b| b == 0).count() < 64,
            "not mostly zeros"
        );
        assert_eq!(
            bytes(4099, 1)[..4096],
            bytes(4096, 1)[..],
            "a prefix of a longer fill"
        );
        assert_eq!(bytes(13, 7).len(), 13);
        assert!(bytes(0, 7).is_empty());
        // No shifted copy of itself, nor of a neighbouring seed.
        for shift in [1, 8, 64, 4096] {
            assert_ne!(a[shift..shift + 3], a[..3], "shift {shift}");
        }
        let mut filled = vec![0xEEu8; 4099];
        fill(&mut filled, 1);
        assert_eq!(filled, a);
    }

    #[test]
    fn the_first_mismatch_names_offset_and_both_bytes() {
        assert_eq!(first_mismatch(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_mismatch(&[], &[]), None);
        assert_eq!(
            first_mismatch(&[1, 2, 3], &[1, 9, 0]),
            Some(Mismatch {
                offset: 1,
                expected: Some(2),
                found: Some(9)
            })
        );
        let short = first_mismatch(&[1, 2, 3], &[1, 2]).unwrap();
        assert_eq!(
            (short.offset, short.expected, short.found),
            (2, Some(3), None)
        );
        let long = first_mismatch(&[1, 2], &[1, 2, 3]).unwrap();
        assert_eq!((long.offset, long.expected, long.found), (2, None, Some(3)));
        // A byte difference before the end wins over the length.
        assert_eq!(first_mismatch(&[1, 2, 3], &[0]).unwrap().offset, 0);
    }

    #[test]
    fn a_mismatch_says_where_and_what() {
        let shown =
            |expected: &[u8], found: &[u8]| first_mismatch(expected, found).unwrap().to_string();
        assert_eq!(
            shown(&[0x5a, 1], &[0x5a, 0]),
            "byte 1 is 0x00, expected 0x01"
        );
        assert_eq!(
            shown(&[0x5a, 1], &[0x5a]),
            "byte 1 is missing (only 1 bytes arrived), expected 0x01"
        );
        assert_eq!(
            shown(&[0x5a], &[0x5a, 0xff]),
            "byte 1 is 0xff, past the end of the 1 bytes expected"
        );
    }
}
