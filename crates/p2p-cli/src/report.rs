//! Small formatting helpers shared by the commands.

use p2p_core::Driver;

/// `13.0` from `13000`.
pub(crate) fn driver_version(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

/// The banner every command prints first in text mode.
pub(crate) fn banner(machine: &crate::machine::Machine) {
    if let Some(notice) = &machine.notice {
        println!("{notice}\n");
    }
    let kind = if machine.simulated() {
        "SIMULATED machine"
    } else {
        "Machine"
    };
    let driver: &dyn Driver = machine.driver().as_ref();
    println!(
        "{kind}: {} (CUDA driver {})",
        machine.name,
        driver_version(driver.driver_version())
    );
}
