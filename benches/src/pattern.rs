//! The benchmarks' correctness check of a copy, on p2p-core's byte patterns
//! (the generator is re-exported here under the name the benchmarks use).

pub use p2p_core::pattern::bytes as pattern;
use p2p_core::pattern::first_mismatch;

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
    if let Some(mismatch) = first_mismatch(expected, head) {
        let offset = mismatch.offset;
        let wrong = head[offset..]
            .iter()
            .zip(&expected[offset..])
            .filter(|(a, b)| a != b)
            .count();
        return Some(format!("{mismatch} ({wrong} wrong bytes from there on)"));
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
