//! Command-line options of the `gpu-bench` binary.

use p2p_move::{format_size, parse_size};

/// The copy sizes measured, smallest first.
pub const SIZES: [usize; 7] = [
    4 << 10,
    64 << 10,
    1 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
    1 << 30,
];

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Sizes above this are skipped.
    pub max_bytes: usize,
    /// Fewer reps: a smoke test, not figures to publish.
    pub quick: bool,
    /// Show cuda:0 as two devices even where there are two GPUs (one GPU
    /// is always shown so).
    pub loopback: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_bytes: SIZES[SIZES.len() - 1],
            quick: false,
            loopback: false,
        }
    }
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

/// The `--help` text.
pub fn usage() -> String {
    let sizes: Vec<String> = SIZES.iter().map(|&s| format_size(s)).collect();
    format!(
        "gpu-bench: p2p-move's routes against raw CUDA driver baselines, on GPUs 0 and 1 (and 2 for `via`)

USAGE: gpu-bench [--max-bytes SIZE] [--quick] [--loopback]

  --max-bytes SIZE   skip sizes above SIZE (e.g. `64MiB`); sizes: {}
  --quick            fewer reps (a smoke test, not figures to publish)
  --loopback         {}: GPU 0 shown as cuda:0 and cuda:1, so the routes
                     through host memory run on it (the mode on a one-GPU machine;
                     rows that need a second GPU are skipped, saying so)
  -h, --help         this text

Writes the table as markdown to $OUT/bench-gpu.md if OUT is set, else target/bench-gpu.md.
Exit status: 0 when every correctness check passed (speed targets do not count),
1 when a check or a driver call failed, 2 when there is no CUDA driver or the arguments
are wrong.",
        sizes.join(", "),
        crate::gpu::LOOPBACK_LABEL
    )
}

impl Options {
    /// The sizes to measure, smallest first (at least the smallest one).
    pub fn sizes(&self) -> Vec<usize> {
        let sizes: Vec<usize> = SIZES
            .iter()
            .copied()
            .filter(|&s| s <= self.max_bytes)
            .collect();
        if sizes.is_empty() {
            vec![SIZES[0]]
        } else {
            sizes
        }
    }
}

/// Reads the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--quick" if inline.is_none() => options.quick = true,
            "--loopback" if inline.is_none() => options.loopback = true,
            "--max-bytes" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or("--max-bytes needs a size, e.g. `--max-bytes 64MiB`")?;
                options.max_bytes =
                    parse_size(&value).map_err(|err| format!("--max-bytes: {err}"))?;
                if options.max_bytes < SIZES[0] {
                    return Err(format!(
                        "--max-bytes {value} is below the smallest size measured ({})",
                        format_size(SIZES[0])
                    ));
                }
            }
            _ => return Err(format!("unknown argument `{arg}`; see --help")),
        }
    }
    Ok(Command::Run(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_measure_every_size() {
        let Ok(Command::Run(options)) = parse_strs(&[]) else {
            panic!()
        };
        assert_eq!(options.sizes(), SIZES.to_vec());
        assert!(!options.quick);
        assert!(!options.loopback);
        let Ok(Command::Run(options)) = parse_strs(&["--loopback"]) else {
            panic!()
        };
        assert!(options.loopback);
    }

    #[test]
    fn max_bytes_caps_the_sizes() {
        let Ok(Command::Run(options)) = parse_strs(&["--max-bytes", "64MiB", "--quick"]) else {
            panic!()
        };
        assert_eq!(options.sizes().last(), Some(&(64 << 20)));
        assert!(options.quick);
        let Ok(Command::Run(options)) = parse_strs(&["--max-bytes=100MiB"]) else {
            panic!()
        };
        assert_eq!(options.sizes().last(), Some(&(64 << 20)));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        assert!(parse_strs(&["--max-bytes"])
            .unwrap_err()
            .contains("needs a size"));
        assert!(parse_strs(&["--max-bytes", "lots"])
            .unwrap_err()
            .contains("--max-bytes"));
        assert!(parse_strs(&["--max-bytes", "1KiB"])
            .unwrap_err()
            .contains("below"));
        assert!(parse_strs(&["--fast"]).unwrap_err().contains("--fast"));
        assert!(parse_strs(&["--loopback=yes"]).is_err());
        assert_eq!(parse_strs(&["--help"]), Ok(Command::Help));
    }
}
