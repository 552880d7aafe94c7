//! How a simulated machine runs: deferred or eager execution, the schedule seed, and the seeds tests sweep.

use super::scheduler::SplitMix64;

/// The environment variable that sets the schedule seed of every
/// [`SimDriver`](super::SimDriver) made without an explicit seed (a `u64`),
/// and that [`seeds`] returns alone, so that a failing schedule can be replayed.
pub const SEED_ENV: &str = "P2P_SIM_SEED";

/// The environment variable that makes [`seeds`] return that many seeds.
pub const SEEDS_ENV: &str = "P2P_SIM_SEEDS";

/// The schedule seed when neither [`SimOptions::seed`] nor [`SEED_ENV`] gives one.
pub const DEFAULT_SEED: u64 = 2;

/// How many seeds [`seeds`] returns by default (one per scheduler eagerness level).
pub const DEFAULT_SEED_COUNT: usize = 5;

/// When queued work is carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Execution {
    /// Queuing runs nothing: work runs when the host observes it and, as the
    /// seeded scheduler chooses, at other driver calls (see the module docs).
    #[default]
    Deferred,
    /// Everything runnable runs at the end of every driver call (faster,
    /// and blind to most ordering bugs; for tests that only want bytes moved).
    Eager,
}

/// Options of a simulated machine; build with [`SimOptions::default`] and the builder methods.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimOptions {
    /// Seeds the scheduler (which stream advances when) and the garbage in fresh allocations.
    pub seed: u64,
    /// Deferred (the default) or eager.
    pub execution: Execution,
    /// Treat all host threads as one (see [`SimOptions::shared_host_clock`]).
    pub shared_host_clock: bool,
}

impl Default for SimOptions {
    /// Deferred, seeded from [`SEED_ENV`] if it holds a `u64`, else [`DEFAULT_SEED`].
    fn default() -> SimOptions {
        SimOptions {
            seed: env_seed().unwrap_or(DEFAULT_SEED),
            execution: Execution::Deferred,
            shared_host_clock: false,
        }
    }
}

impl SimOptions {
    /// These options with schedule seed `seed`.
    pub fn seed(mut self, seed: u64) -> SimOptions {
        self.seed = seed;
        self
    }

    /// These options with `execution`.
    pub fn execution(mut self, execution: Execution) -> SimOptions {
        self.execution = execution;
        self
    }

    /// With `true`, the race detector treats every host thread as one: code
    /// that hands memory from thread to thread through its own locks (which
    /// the simulator cannot see) is then not reported, at the price of
    /// missing races between threads that really are unordered.
    pub fn shared_host_clock(mut self, shared: bool) -> SimOptions {
        self.shared_host_clock = shared;
        self
    }
}

/// The seed in [`SEED_ENV`], if it is set to a `u64` (anything else is
/// ignored with a warning, falling back to the default seed).
pub fn env_seed() -> Option<u64> {
    let text = std::env::var(SEED_ENV).ok()?;
    match text.trim().parse() {
        Ok(seed) => Some(seed),
        Err(_) => {
            tracing::warn!("{SEED_ENV}={text:?} is not a u64; using the default schedule seed");
            None
        }
    }
}

/// The schedule seeds a test should run its body over.
///
/// With [`SEED_ENV`] set, only that seed (to replay a failure); else with
/// [`SEEDS_ENV`]`=N`, N seeds; else [`DEFAULT_SEED_COUNT`]. The first five
/// seeds cover every eagerness level of the scheduler; later ones are spread
/// over the `u64` range.
pub fn seeds() -> Vec<u64> {
    if let Some(seed) = env_seed() {
        return vec![seed];
    }
    let count = std::env::var(SEEDS_ENV)
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .filter(|&count| count > 0)
        .unwrap_or(DEFAULT_SEED_COUNT);
    let mut spread = SplitMix64::new(0x5eed);
    (0..count as u64)
        .map(|i| if i < 5 { i } else { spread.next_u64() })
        .collect()
}
