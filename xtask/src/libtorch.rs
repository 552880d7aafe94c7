//! libtorch for building `p2p-tch`: PyTorch from PyPI in `<root>/.venv`, and the env that points `torch-sys` at it.

use std::path::{Path, PathBuf};

use crate::util::{bail, prepend_path_var, project_root, Cmd, Result};

/// The PyTorch release that `tch = "=0.24.0"` is built against (tch pins the libtorch version it binds).
pub(crate) const TORCH_VERSION: &str = "2.11.0";

/// Where libtorch lives, and how to tell cargo about it.
#[derive(Debug)]
pub(crate) struct LibtorchEnv {
    /// `<root>/.venv/bin`: first on `PATH`, so `torch-sys`'s build script runs this `python`.
    pub(crate) venv_bin: PathBuf,
    /// `site-packages/torch/lib`: `libtorch*.so`, for the linker at run time.
    pub(crate) lib_dir: PathBuf,
}

impl LibtorchEnv {
    /// `cmd` with `LIBTORCH_USE_PYTORCH=1`, the venv first on `PATH`, and `torch/lib` on `LD_LIBRARY_PATH`.
    pub(crate) fn apply(&self, cmd: Cmd) -> Result<Cmd> {
        Ok(cmd
            .env("LIBTORCH_USE_PYTORCH", "1")
            .env("PATH", prepend_path_var("PATH", &self.venv_bin)?)
            .env(
                "LD_LIBRARY_PATH",
                prepend_path_var("LD_LIBRARY_PATH", &self.lib_dir)?,
            ))
    }
}

/// Creates (or reuses) `<root>/.venv` with `torch==2.11.0` in it and returns its env.
/// The install (about 4.6 GB) happens only when the venv does not already have that version.
pub(crate) fn ensure_libtorch() -> Result<LibtorchEnv> {
    let venv = project_root().join(".venv");
    let venv_bin = venv.join("bin");
    let python = venv_bin.join("python");
    if !python.exists() {
        Cmd::new("python3").args(["-m", "venv", ".venv"]).run().map_err(|err| {
            crate::util::Error::new(format!(
                "{err}\n(creating {} needs Python 3 with the venv module; on Debian/Ubuntu: apt-get install python3-venv)",
                venv.display()
            ))
        })?;
    }
    match installed_torch(&python) {
        Some(version) if is_wanted_version(&version) => {
            println!(
                "==> libtorch: torch {version} already in {}",
                venv.display()
            );
        }
        found => {
            if let Some(version) = found {
                println!(
                    "==> libtorch: {} has torch {version}; installing {TORCH_VERSION}",
                    venv.display()
                );
            }
            Cmd::new(venv_bin.join("pip"))
                .args(["install", "--quiet", &format!("torch=={TORCH_VERSION}")])
                .run()?;
            match installed_torch(&python) {
                Some(version) if is_wanted_version(&version) => {}
                other => bail!(
                    "after `pip install torch=={TORCH_VERSION}`, {} reports torch {}",
                    python.display(),
                    other.as_deref().unwrap_or("missing")
                ),
            }
        }
    }
    let lib_dir = Cmd::new(&python)
        .args([
            "-c",
            "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .quiet()
        .read()?;
    let lib_dir = PathBuf::from(lib_dir.trim());
    if !lib_dir.is_dir() {
        bail!(
            "torch reports its libraries in {}, which is not a directory",
            lib_dir.display()
        );
    }
    Ok(LibtorchEnv { venv_bin, lib_dir })
}

/// `torch.__version__` in that interpreter, or `None` when torch does not import.
fn installed_torch(python: &Path) -> Option<String> {
    let version = Cmd::new(python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .quiet()
        .read_silently()
        .ok()?;
    Some(version.trim().to_owned())
}

/// PyPI wheels report a local suffix (`2.11.0+cu128`); the release is what matters.
fn is_wanted_version(version: &str) -> bool {
    version.split('+').next() == Some(TORCH_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_local_version_suffix() {
        assert!(is_wanted_version("2.11.0"));
        assert!(is_wanted_version("2.11.0+cu128"));
        assert!(!is_wanted_version("2.11.1"));
        assert!(!is_wanted_version("2.1.0"));
    }

    #[test]
    #[ignore = "creates .venv and installs PyTorch (about 4.6 GB) from PyPI"]
    fn sets_up_libtorch() {
        let env = ensure_libtorch().unwrap();
        assert!(env.lib_dir.join("libtorch_cpu.so").exists(), "{env:?}");
        assert!(env.venv_bin.join("python").exists(), "{env:?}");
    }
}
