//! The machine a run measures: the driver, whether its cuda:0 and cuda:1 are
//! two GPUs or one seen as two ([`Mode`]), and the raw batched copy if the
//! driver has one.

use std::sync::Arc;

use p2p_core::{Driver, Result};

use super::loopback::{Loopback, LOOPBACK_LABEL};
use crate::raw_batch::RawBatch;

/// How cuda:0 and cuda:1 of a run relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Two or more GPUs (the count): cuda:0 -> cuda:1 crosses between two devices.
    Gpus(usize),
    /// One GPU seen as two ([`Loopback`]): only routes through host memory
    /// and copies on one device are physically meaningful.
    Loopback,
}

impl Mode {
    /// What the rows' `machine` column says.
    pub fn label(self) -> String {
        match self {
            Mode::Gpus(count) => format!("{count} GPUs"),
            Mode::Loopback => "loopback (1 GPU as 2)".into(),
        }
    }

    /// What the run is, in a sentence, for the output and the markdown.
    pub fn description(self) -> String {
        match self {
            Mode::Gpus(count) => format!(
                "Machine: {count} GPUs; cuda:0 -> cuda:1 are two devices (rows say `{}`).",
                self.label()
            ),
            Mode::Loopback => format!(
                "Machine: {LOOPBACK_LABEL} (rows say `{}`). cuda:0 and cuda:1 are both the \
                 one GPU; the driver reports the pair as not claimed, so the probe says \
                 \"not claimed\" and the planner stages through pinned host memory, as on a \
                 machine whose peer copy is broken. The device-to-host and host-to-device \
                 legs then cross the same PCIe link in opposite directions (full duplex), \
                 which is what a staged copy between two GPUs does on their two links. \
                 Rows that need a second GPU (peer, pool memory, via) are skipped; \
                 device-to-device rows run on the one GPU (cuda:0 -> cuda:0).",
                self.label()
            ),
        }
    }
}

/// What a run measures on.
#[derive(Debug)]
pub struct Machine {
    /// cuda:0 and cuda:1 (and cuda:2 for via rows, where there is one).
    pub driver: Arc<dyn Driver>,
    pub mode: Mode,
    /// The raw batched copy for the driver-options rows on cuda:0's streams,
    /// or why there is none (then those rows are skipped, and say so).
    pub raw_batch: std::result::Result<RawBatch, String>,
}

impl Machine {
    /// `driver` as it is when it has two or more GPUs and `loopback` is
    /// false; else its cuda:0 seen as two devices.
    ///
    /// # Errors
    /// When the driver has no device.
    pub fn new(driver: Arc<dyn Driver>, loopback: bool) -> Result<Machine> {
        let count = driver.device_count();
        let (driver, mode): (Arc<dyn Driver>, Mode) = if loopback || count < 2 {
            (Arc::new(Loopback::new(driver)?), Mode::Loopback)
        } else {
            (driver, Mode::Gpus(count))
        };
        let raw_batch = Err(match driver.backend() {
            p2p_core::Backend::Simulated => {
                "a simulated machine has no driver library to call".into()
            }
            p2p_core::Backend::Cuda => "no CUDA context was given for the raw batched copy".into(),
        });
        Ok(Machine {
            driver,
            mode,
            raw_batch,
        })
    }

    /// The same machine with the raw batched copy (or why there is none).
    pub fn with_raw_batch(self, raw_batch: std::result::Result<RawBatch, String>) -> Machine {
        Machine { raw_batch, ..self }
    }
}
