//! Small formatting helpers shared by the commands.

use p2p_core::Driver;

/// `13.0` from `13000`.
pub(crate) fn driver_version(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

/// `text` with control characters escaped (`\n`, `\u{1b}`, ...): names come
/// from topology files and drivers, and a raw escape sequence or line break
/// in one would rewrite the terminal or forge output lines.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The banner every command prints first in text mode.
pub(crate) fn banner(machine: &crate::machine::Machine) {
    if let Some(notice) = &machine.notice {
        // Line breaks are the notice's own; each line is escaped.
        for line in notice.lines() {
            println!("{}", printable(line));
        }
        println!();
    }
    let kind = if machine.simulated() {
        "SIMULATED machine"
    } else {
        "Machine"
    };
    let driver: &dyn Driver = machine.driver().as_ref();
    println!(
        "{kind}: {} (CUDA driver {})",
        printable(&machine.name),
        driver_version(driver.driver_version())
    );
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("RTX 4090"), "RTX 4090");
        assert_eq!(printable("a\u{1b}[31mred\nb\t"), "a\\u{1b}[31mred\\nb\\t");
        assert_eq!(printable("Ünïcode ✓"), "Ünïcode ✓");
    }
}
