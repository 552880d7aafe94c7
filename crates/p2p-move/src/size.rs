//! Byte sizes for people: [`parse_size`] reads `8 MiB`, [`format_size`] writes it.
//!
//! Units are case-insensitive and always count bytes. Following GNU
//! coreutils (`dd`, `truncate`): `K`, `M`, `G`, `T`, `P`, `E` and `KiB`,
//! `MiB`, `GiB`, `TiB`, `PiB`, `EiB` are powers of 1024; `KB`, `MB`, `GB`,
//! `TB`, `PB`, `EB` are powers of 1000; `B` or no unit is bytes. A decimal fraction is accepted when the result is a
//! whole number of bytes (`1.5 KiB` is 1536; `1.1 KiB` is refused).

/// A size that [`parse_size`] could not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSizeError {
    /// Nothing but whitespace.
    #[error("empty size: expected a number of bytes such as `4096`, `64 KiB` or `1.5 GiB`")]
    Empty,
    /// The number part is missing or malformed.
    #[error(
        "invalid size {text:?}: expected a number of bytes such as `4096`, `64 KiB` or `1.5 GiB`"
    )]
    InvalidNumber {
        /// The text as given.
        text: String,
    },
    /// The unit is not one we know.
    #[error(
        "invalid size {text:?}: unknown unit {unit:?} (use B; KiB, MiB, GiB, TiB, PiB, EiB or \
         K, M, G, T, P, E for powers of 1024; KB, MB, GB, TB, PB, EB for powers of 1000)"
    )]
    UnknownUnit {
        /// The text as given.
        text: String,
        /// The unit part of it.
        unit: String,
    },
    /// The value is not a whole number of bytes (`1.1 KiB`, `0.5`).
    #[error("invalid size {text:?}: not a whole number of bytes")]
    NotWholeBytes {
        /// The text as given.
        text: String,
    },
    /// The value does not fit in `usize` on this machine.
    #[error("invalid size {text:?}: larger than the maximum of {max} bytes")]
    TooLarge {
        /// The text as given.
        text: String,
        /// `usize::MAX`.
        max: usize,
    },
}

/// Reads a byte count: `4096`, `4096 B`, `64KiB`, `64 k`, `1.5 GiB`, `2 GB`.
///
/// Units are case-insensitive and always count bytes. As in GNU coreutils
/// (`dd`, `truncate`): `K`, `M`, `G`, `T`, `P`, `E` and `KiB` ... `EiB` are
/// powers of 1024; `KB` ... `EB` are powers of 1000; `B` or no unit is bytes.
/// A decimal fraction is accepted when the result is a whole number of bytes
/// (`1.5 KiB` is 1536; `1.1 KiB` is refused).
pub fn parse_size(text: &str) -> Result<usize, ParseSizeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ParseSizeError::Empty);
    }
    let invalid = || ParseSizeError::InvalidNumber {
        text: text.to_string(),
    };
    let too_large = || ParseSizeError::TooLarge {
        text: text.to_string(),
        max: usize::MAX,
    };

    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit = unit.trim_start();
    let multiplier = unit_multiplier(unit).ok_or_else(|| ParseSizeError::UnknownUnit {
        text: text.to_string(),
        unit: unit.to_string(),
    })?;

    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(invalid());
    }
    // Trailing zeros after the point change nothing; dropping them keeps the
    // exact arithmetic below in range for any sensible input.
    let fraction = fraction.trim_end_matches('0');

    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        // Only digits are left, so a parse failure can only be overflow.
        whole.parse().map_err(|_| too_large())?
    };
    let mut bytes = whole_value.checked_mul(multiplier).ok_or_else(too_large)?;

    if !fraction.is_empty() {
        // value = numerator / 10^digits exactly; the product with the
        // multiplier is whole only if 10^digits / gcd divides the numerator.
        let digits = u32::try_from(fraction.len()).map_err(|_| invalid())?;
        let denominator = 10u128.checked_pow(digits).ok_or_else(invalid)?;
        let numerator: u128 = fraction.parse().map_err(|_| invalid())?;
        let common = gcd(multiplier, denominator);
        let (reduced_multiplier, reduced_denominator) = (multiplier / common, denominator / common);
        if numerator % reduced_denominator != 0 {
            return Err(ParseSizeError::NotWholeBytes {
                text: text.to_string(),
            });
        }
        let fraction_bytes = (numerator / reduced_denominator)
            .checked_mul(reduced_multiplier)
            .ok_or_else(too_large)?;
        bytes = bytes.checked_add(fraction_bytes).ok_or_else(too_large)?;
    }
    usize::try_from(bytes).map_err(|_| too_large())
}

/// Writes a byte count with the largest binary unit that keeps the number at
/// least 1: `512 B`, `8 MiB`, `1.5 KiB`. Exact values print without trailing
/// zeros and read back with [`parse_size`] to the same count; values that
/// had to be rounded keep two decimals (`3.91 KiB` for 4000 bytes).
pub fn format_size(bytes: usize) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let bytes = bytes as u128;
    let mut exponent = 0;
    while exponent + 1 < UNITS.len() && bytes >= 1u128 << (10 * (exponent + 1)) {
        exponent += 1;
    }
    let unit = 1u128 << (10 * exponent);
    if bytes % unit == 0 {
        return format!("{} {}", bytes / unit, UNITS[exponent]);
    }
    if (bytes * 100) % unit == 0 {
        let hundredths = bytes * 100 / unit;
        let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
        return format!("{} {}", text.trim_end_matches('0'), UNITS[exponent]);
    }
    let mut hundredths = (bytes * 100 + unit / 2) / unit;
    // 1 MiB - 1 byte would round to "1024.00 KiB": say "1.00 MiB" instead.
    if hundredths >= 1024 * 100 && exponent + 1 < UNITS.len() {
        exponent += 1;
        let unit = 1u128 << (10 * exponent);
        hundredths = (bytes * 100 + unit / 2) / unit;
    }
    format!(
        "{}.{:02} {}",
        hundredths / 100,
        hundredths % 100,
        UNITS[exponent]
    )
}

fn unit_multiplier(unit: &str) -> Option<u128> {
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "p" | "pib" => 1 << 50,
        "e" | "eib" => 1 << 60,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "pb" => 1_000_000_000_000_000,
        "eb" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    Some(multiplier)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_bytes_and_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 4096 B "), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64 k"), Ok(64 << 10));
        assert_eq!(parse_size("8 MiB"), Ok(8 << 20));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("2 gib"), Ok(2 << 30));
        assert_eq!(parse_size("1 TiB"), Ok(1 << 40));
        assert_eq!(parse_size("3.5 PiB"), Ok(7 << 49));
        assert_eq!(parse_size("15 EiB"), Ok(15 << 60));
        assert_eq!(parse_size("2 bytes"), Ok(2));
    }

    #[test]
    fn si_units_are_powers_of_1000() {
        assert_eq!(parse_size("1 KB"), Ok(1_000));
        assert_eq!(parse_size("16MB"), Ok(16_000_000));
        assert_eq!(parse_size("2 GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1 TB"), Ok(1_000_000_000_000));
    }

    #[test]
    fn parses_exact_fractions() {
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("0.5 MiB"), Ok(512 << 10));
        assert_eq!(parse_size(".25 GiB"), Ok(256 << 20));
        assert_eq!(
            parse_size("1.500000000000000000000000000000000000000000 KiB"),
            Ok(1536)
        );
        assert_eq!(parse_size("2.5 KB"), Ok(2500));
        assert_eq!(parse_size("3."), Ok(3));
        // 2^-30 TiB is exactly 1 KiB, though it takes 30 decimals to say so.
        assert_eq!(parse_size("0.000000000931322574615478515625 TiB"), Ok(1024));
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        assert_eq!(parse_size(""), Err(ParseSizeError::Empty));
        assert_eq!(parse_size("   "), Err(ParseSizeError::Empty));
        for text in ["KiB", "-1", "+1", ".", "1.2.3", "1..2 KiB", "0x10"] {
            assert!(
                matches!(
                    parse_size(text),
                    Err(ParseSizeError::InvalidNumber { .. } | ParseSizeError::UnknownUnit { .. })
                ),
                "{text:?} gave {:?}",
                parse_size(text)
            );
        }
        assert_eq!(
            parse_size("4 XiB"),
            Err(ParseSizeError::UnknownUnit {
                text: "4 XiB".into(),
                unit: "XiB".into()
            })
        );
        assert_eq!(
            parse_size("1.1 KiB"),
            Err(ParseSizeError::NotWholeBytes {
                text: "1.1 KiB".into()
            })
        );
        assert!(matches!(
            parse_size("0.5"),
            Err(ParseSizeError::NotWholeBytes { .. })
        ));
        assert!(matches!(
            parse_size("99999999999999999999999999999999999999999999"),
            Err(ParseSizeError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_size("100000000000 TiB"),
            Err(ParseSizeError::TooLarge { .. })
        ));
    }

    #[test]
    fn error_messages_say_what_to_write() {
        let message = parse_size("8 mbit").unwrap_err().to_string();
        assert!(
            message.contains("\"mbit\"") && message.contains("MiB"),
            "{message}"
        );
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(4000), "3.91 KiB");
        assert_eq!(format_size(8 << 20), "8 MiB");
        assert_eq!(format_size((1 << 20) - 1), "1.00 MiB");
        assert_eq!(format_size(3 << 30), "3 GiB");
        assert_eq!(format_size(usize::MAX), "16.00 EiB");
    }

    #[test]
    fn exact_formats_read_back() {
        for bytes in [
            0,
            1,
            1023,
            1024,
            1536,
            8 << 20,
            (5 << 30) + (1 << 29),
            1 << 40,
            7 << 49,
        ] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
    }
}
