//! Opening the machine a command works on: real GPUs, a topology file, or the built-in simulation.

use std::sync::Arc;

use p2p_core::sim::{builtin_topology, SimOptions, Topology};
use p2p_core::{Backend, Config, CudaDriver, Driver, Error, PeerTable, SimDriver, ENV_DISABLE};

/// Topology files larger than this are refused unread (1000 GPUs take ~100 KiB).
const MAX_TOPOLOGY_BYTES: u64 = 16 << 20;

/// Simulated machines of more GPUs than this are refused: the simulator and
/// the verdict table keep a slot per ordered pair, so a file of 20 000
/// `[[gpu]]` lines (160 KB) would ask for tens of GB and abort the process.
/// No real machine comes near it.
pub(crate) const MAX_SIMULATED_GPUS: usize = 1024;

use crate::MachineArgs;

/// Why a command failed, and with which exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// No GPU and `--require-gpu`: exit 2.
    #[error("{0}")]
    NoGpu(String),
    #[error(transparent)]
    Core(#[from] p2p_core::Error),
    #[error(transparent)]
    Move(#[from] p2p_move::Error),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Arguments that cannot be used together or name nothing.
    #[error("{0}")]
    Usage(String),
    /// A topology file that describes no GPU (empty, or only comments).
    #[error("{}: describes no GPU; add a [[gpu]] table for each simulated GPU", path.display())]
    EmptyTopology { path: std::path::PathBuf },
    /// A topology file that describes more GPUs than can be simulated.
    #[error("{}: describes {gpus} GPUs; a simulated machine has at most {MAX_SIMULATED_GPUS}", path.display())]
    TooManyGpus {
        path: std::path::PathBuf,
        gpus: usize,
    },
    /// A command-line value that cannot work on this machine.
    #[error("{option} {value}: {message}")]
    BadValue {
        option: &'static str,
        value: String,
        message: String,
    },
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::NoGpu(_) => 2,
            _ => 1,
        }
    }
}

/// The machine a command runs against.
pub(crate) struct Machine {
    pub(crate) table: Arc<PeerTable>,
    /// Why we are on a simulated machine, if we are (for the banner).
    pub(crate) notice: Option<String>,
    pub(crate) name: String,
    /// The simulated machine, when it is one (for its race reports).
    pub(crate) sim: Option<Arc<SimDriver>>,
}

impl Machine {
    pub(crate) fn simulated(&self) -> bool {
        self.table.driver().backend() == Backend::Simulated
    }

    pub(crate) fn driver(&self) -> &Arc<dyn Driver> {
        self.table.driver()
    }
}

/// Opens `--sim FILE`, else the real GPUs, else (unless `--require-gpu`) the built-in simulated machine.
pub(crate) fn open(args: &MachineArgs) -> Result<Machine, CliError> {
    open_with(args, false)
}

/// As [`open`]; `shared_host_clock` makes a simulated machine's race
/// detector treat all host threads as one, for commands that hand memory
/// from thread to thread by spawning and joining them (which it cannot see).
pub(crate) fn open_with(args: &MachineArgs, shared_host_clock: bool) -> Result<Machine, CliError> {
    let mut config = Config::from_env()?;
    config.reprobe |= args.reprobe;
    config.probe.thorough |= args.thorough;
    if let Some(ms) = args.probe_timeout_ms {
        // clap refuses 0: a probe that may take no time declares every pair hung.
        config.probe.deadline = std::time::Duration::from_millis(ms);
    }
    let mut options = SimOptions::default().shared_host_clock(shared_host_clock);
    if let Some(seed) = args.schedule_seed {
        options = options.seed(seed);
    }
    let mut simulated = None;
    let (driver, notice, name): (Arc<dyn Driver>, _, _) = if let Some(path) = &args.sim {
        if args.require_gpu {
            return Err(CliError::NoGpu(format!(
                "--require-gpu given with --sim {}: a simulated machine is not a GPU",
                path.display()
            )));
        }
        let sim = Arc::new(open_topology(path, options)?);
        let name = sim.machine_name().to_string();
        simulated = Some(sim.clone());
        (
            sim,
            Some(format!("simulated machine from {}", path.display())),
            name,
        )
    } else {
        match CudaDriver::new() {
            Ok(cuda) => {
                let name = describe_real(&cuda);
                (Arc::new(cuda), None, name)
            }
            Err(err) if args.require_gpu => {
                return Err(CliError::NoGpu(format!("no usable GPU: {err}")));
            }
            Err(err) => {
                let sim = Arc::new(SimDriver::with_options(builtin_topology(), options));
                let name = sim.machine_name().to_string();
                simulated = Some(sim.clone());
                let notice = format!(
                    "{err}\nShowing the built-in SIMULATED machine instead (4 GPUs, one broken pair); \
                     use --require-gpu to fail instead, or --sim FILE for your own topology."
                );
                (sim, Some(notice), name)
            }
        }
    };
    // Pairs naming GPUs this machine lacks are a typo, not a no-op.
    config
        .disabled
        .check_devices(driver.device_count())
        .map_err(|message| Error::InvalidEnv {
            name: ENV_DISABLE,
            value: std::env::var(ENV_DISABLE).unwrap_or_default(),
            message,
        })?;
    Ok(Machine {
        table: Arc::new(PeerTable::new(driver, config)),
        notice,
        name,
        sim: simulated,
    })
}

/// A topology file: a regular file of bounded size (a FIFO or `/dev/zero`
/// would hang or fill memory), describing at least one GPU.
fn open_topology(path: &std::path::Path, options: SimOptions) -> Result<SimDriver, CliError> {
    let text =
        p2p_core::files::read_regular_file(path, MAX_TOPOLOGY_BYTES, "reading topology file")?;
    let topology = Topology::parse(&text, path)?;
    if topology.gpus.is_empty() {
        return Err(CliError::EmptyTopology {
            path: path.to_path_buf(),
        });
    }
    if topology.gpus.len() > MAX_SIMULATED_GPUS {
        return Err(CliError::TooManyGpus {
            path: path.to_path_buf(),
            gpus: topology.gpus.len(),
        });
    }
    Ok(SimDriver::with_options(topology, options))
}

fn describe_real(cuda: &CudaDriver) -> String {
    let devices = cuda.devices();
    match devices.first() {
        Some(first) if devices.iter().all(|d| d.name == first.name) => {
            format!("{} x {}", devices.len(), first.name)
        }
        _ => devices
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(" + "),
    }
}
