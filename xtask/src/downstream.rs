//! The downstream checks of `cargo xtask test`: `cargo check` of the small crates under `xtask/downstream/`, which use cudarc the way users do.
//!
//! Each is its own workspace with path dependencies on p2p-core and p2p-move,
//! so it resolves features as a user's crate would: a clash between our
//! cudarc features and theirs (two CUDA versions, or cudarc's build script
//! refusing a union of linking modes) fails here, not in a user's build. They
//! share one target directory, so a second run rebuilds nothing, and with
//! their lock files committed they need no network once their crates are fetched.

use std::path::{Path, PathBuf};

use crate::util::{bail, project_root, Cmd, Error, Result};

/// Where the downstream crates live, from the repository root.
const DIR: &str = "xtask/downstream";
/// Their shared target directory, from the repository root.
const TARGET: &str = "target/downstream";

/// Checks every downstream crate, in name order, stopping at the first failure.
pub(crate) fn check_all() -> Result<()> {
    let root = project_root();
    let crates = downstream_crates(&root.join(DIR))?;
    if crates.is_empty() {
        bail!("no downstream crates under {DIR}: the cudarc feature checks would pass vacuously");
    }
    let target = root.join(TARGET);
    for manifest in crates {
        Cmd::cargo()
            .args(["check", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .run()?;
    }
    Ok(())
}

/// `cargo xtask cuda-versions`: `cargo check` of p2p-core and p2p-move with
/// each CUDA version feature p2p-core declares, so a binding that differs
/// between versions and lacks its `cfg` shows. Too slow for every
/// `cargo xtask test` (one cudarc build per version); run it when the
/// backend's driver calls change.
pub(crate) fn check_cuda_versions() -> Result<()> {
    let root = project_root();
    let manifest = root.join("crates/p2p-core/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|err| Error::new(format!("cannot read {}: {err}", manifest.display())))?;
    let versions = cuda_version_features(&text);
    if versions.is_empty() {
        bail!(
            "{} declares no `cuda-*` version feature",
            manifest.display()
        );
    }
    for version in versions {
        Cmd::cargo()
            .args(["check", "--quiet", "-p", "p2p-core", "-p", "p2p-move"])
            .args(["--no-default-features", "--features"])
            .arg(format!("p2p-core/{version},p2p-move/{version}"))
            .run()?;
    }
    Ok(())
}

/// The `cuda-NNNNN = [...]` feature names of a manifest, in order.
fn cuda_version_features(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| {
            name.strip_prefix("cuda-").is_some_and(|digits| {
                digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .map(str::to_owned)
        .collect()
}

/// The `Cargo.toml` of each directory under `dir`, sorted.
fn downstream_crates(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|err| Error::new(format!("cannot list {}: {err}", dir.display())))?;
    let mut manifests: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("Cargo.toml"))
        .filter(|manifest| manifest.is_file())
        .collect();
    manifests.sort();
    Ok(manifests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_cuda_version_feature_of_p2p_core() {
        let text =
            std::fs::read_to_string(project_root().join("crates/p2p-core/Cargo.toml")).unwrap();
        let versions = cuda_version_features(&text);
        assert_eq!(versions.len(), 19, "{versions:?}");
        assert_eq!(versions.first().map(String::as_str), Some("cuda-11040"));
        assert_eq!(versions.last().map(String::as_str), Some("cuda-13040"));
        assert!(!versions.iter().any(|v| v == "cuda-tests"));
    }

    #[test]
    fn finds_the_downstream_crates_the_issue_asks_for() {
        let crates = downstream_crates(&project_root().join(DIR)).unwrap();
        let names: Vec<String> = crates
            .iter()
            .filter_map(|m| m.parent()?.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert_eq!(
            names,
            ["candle-cudarc-set", "cudarc-12060-linking", "cudarc-13000"]
        );
        for manifest in &crates {
            let text = std::fs::read_to_string(manifest).unwrap();
            // Each must be its own workspace, or cargo would resolve it with ours.
            assert!(text.contains("\n[workspace]\n"), "{}", manifest.display());
        }
    }
}
