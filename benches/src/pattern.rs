//! Byte patterns that catch wrong copies: position-dependent, never constant,
//! so zeros, stale bytes, shifted or truncated copies all differ from them.

/// Fills `out` with the pattern for `seed`: byte `i` depends on `i` and `seed`.
///
/// Words of 8 bytes from a SplitMix64 step of the word index: fast (about a
/// gigabyte per second on one core) and without short periods, so a copy
/// that lands at the wrong offset does not match by accident.
pub fn fill(out: &mut [u8], seed: u64) {
    let last = (out.len() / 8) as u64;
    let mut words = out.chunks_exact_mut(8);
    for (index, word) in (&mut words).enumerate() {
        word.copy_from_slice(&mix(index as u64 ^ seed.rotate_left(32)).to_le_bytes());
    }
    let tail = words.into_remainder();
    let bytes = mix(last ^ seed.rotate_left(32)).to_le_bytes();
    tail.copy_from_slice(&bytes[..tail.len()]);
}

/// A new vector of `len` pattern bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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

/// What a correctness check found wrong, in words; `None` when all is right.
///
/// `found` is the whole destination buffer after a copy of `expected.len()`
/// bytes into its start: those must equal `expected`, and every byte after
/// them must still be `poison` (a copy must not write past its end).
pub fn check_copy(found: &[u8], expected: &[u8], poison: u8) -> Option<String> {
    if found.len() < expected.len() {
        return Some(format!(
            "read back {} bytes, expected at least {}",
            found.len(),
            expected.len()
        ));
    }
    let (head, tail) = found.split_at(expected.len());
    if let Some(offset) = head.iter().zip(expected).position(|(a, b)| a != b) {
        let wrong = head[offset..]
            .iter()
            .zip(&expected[offset..])
            .filter(|(a, b)| a != b)
            .count();
        return Some(format!(
            "byte {offset} is {:#04x}, expected {:#04x} ({wrong} wrong bytes from there on)",
            head[offset], expected[offset]
        ));
    }
    if let Some(past) = tail.iter().position(|&b| b != poison) {
        return Some(format!(
            "wrote past the end: byte {} (copy length + {past}) changed",
            expected.len() + past
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_depends_on_position_and_seed() {
        let a = pattern(4099, 1);
        assert_eq!(a, pattern(4099, 1));
        assert_ne!(a, pattern(4099, 2));
        assert_ne!(a[..8], a[8..16]);
        assert!(a.iter().any(|&b| b != a[0]));
        assert_eq!(pattern(4099, 1)[..4096], pattern(4096, 1)[..]);
    }

    #[test]
    fn checks_find_wrong_bytes_and_overruns() {
        let expected = pattern(100, 7);
        let mut found = expected.clone();
        found.extend([0xA5; 20]);
        assert_eq!(check_copy(&found, &expected, 0xA5), None);
        found[40] ^= 1;
        assert!(check_copy(&found, &expected, 0xA5)
            .unwrap()
            .starts_with("byte 40"));
        found[40] ^= 1;
        found[105] = 0;
        assert!(check_copy(&found, &expected, 0xA5)
            .unwrap()
            .contains("past the end"));
        assert!(check_copy(&found[..50], &expected, 0xA5).is_some());
    }
}
