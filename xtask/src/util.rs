//! Shared helpers: the project root, the error type, and a command runner that echoes what it runs.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A task failure: a message for a person, printed by `main` as `error: ...`.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with an [`Error`] built like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::util::Error::new(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// The repository root (the directory holding the workspace `Cargo.toml`).
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one directory below the repository root")
        .to_path_buf()
}

/// Reads a file, naming it in the error.
pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|err| Error::new(format!("cannot read {}: {err}", path.display())))
}

/// `path` prepended to the current value of the list variable `var` (`PATH`, `LD_LIBRARY_PATH`).
pub(crate) fn prepend_path_var(var: &str, path: &Path) -> Result<OsString> {
    let mut entries = vec![path.to_path_buf()];
    if let Some(current) = std::env::var_os(var) {
        entries.extend(std::env::split_paths(&current).filter(|entry| entry != path));
    }
    std::env::join_paths(entries)
        .map_err(|err| Error::new(format!("cannot put {} into {var}: {err}", path.display())))
}

pub(crate) fn format_duration(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    }
}

/// A command to run from the repository root. `run` and `read` print a
/// `==> program args` header first and the elapsed time after, and turn a
/// failure to start or a non-zero exit into an [`Error`] naming the command.
#[derive(Debug)]
pub(crate) struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    dir: PathBuf,
    echo: bool,
}

impl Cmd {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            dir: project_root(),
            echo: true,
        }
    }

    /// `cargo`, found on `PATH` like rustup's proxy, so `cargo fmt` and
    /// `cargo clippy` resolve to the same toolchain as `cargo xtask`.
    pub(crate) fn cargo() -> Self {
        Cmd::new("cargo")
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// No header and no timing: for quick questions (`python -c ...`).
    pub(crate) fn quiet(mut self) -> Self {
        self.echo = false;
        self
    }

    /// Runs with the terminal's stdout and stderr.
    pub(crate) fn run(&self) -> Result<()> {
        self.execute(false, Stdio::inherit()).map(drop)
    }

    /// Runs and returns stdout; stderr stays on the terminal.
    pub(crate) fn read(&self) -> Result<String> {
        self.execute(true, Stdio::inherit())
    }

    /// Runs and returns stdout; stderr is discarded (for questions whose failure is an answer).
    pub(crate) fn read_silently(&self) -> Result<String> {
        self.execute(true, Stdio::null())
    }

    /// Whether the command starts and exits with status 0; its output is discarded.
    pub(crate) fn succeeds(&self) -> bool {
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).current_dir(&self.dir);
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        command
    }

    fn execute(&self, capture: bool, stderr: Stdio) -> Result<String> {
        if self.echo {
            println!("==> {self}");
        }
        let start = Instant::now();
        let mut command = self.command();
        // `output()` captures both streams unless told otherwise.
        command
            .stdout(if capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .stderr(stderr);
        let output = command.output().map_err(|err| {
            Error::new(format!(
                "could not start `{}`: {err} (is it installed and on PATH?)",
                self.program.to_string_lossy()
            ))
        })?;
        let elapsed = format_duration(start.elapsed());
        if !output.status.success() {
            bail!("`{self}` failed ({}) after {elapsed}", output.status);
        }
        if self.echo {
            println!("    done in {elapsed}");
        }
        String::from_utf8(output.stdout)
            .map_err(|_| Error::new(format!("`{self}` printed output that is not UTF-8")))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.to_string_lossy())?;
        for arg in &self.args {
            write!(f, " {}", arg.to_string_lossy())?;
        }
        if !self.envs.is_empty() {
            // Names only: PATH and LD_LIBRARY_PATH values would swamp the line.
            let names: Vec<_> = self
                .envs
                .iter()
                .map(|(key, _)| key.to_string_lossy())
                .collect();
            write!(f, "  [env: {}]", names.join(", "))?;
        }
        Ok(())
    }
}
