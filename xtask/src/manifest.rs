//! Just enough `Cargo.toml` reading for the tasks: members, package names, features, a dependency.
//!
//! Line-based on purpose (no TOML dependency in xtask): it understands the
//! layout this workspace uses, one key per line under `[section]` headers.

use std::path::{Path, PathBuf};

use crate::util::{bail, read_to_string, Result};

/// One workspace member's manifest.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub(crate) dir: PathBuf,
    text: String,
}

impl Manifest {
    pub(crate) fn read(dir: &Path) -> Result<Self> {
        let text = read_to_string(&dir.join("Cargo.toml"))?;
        Ok(Manifest {
            dir: dir.to_path_buf(),
            text,
        })
    }

    #[cfg(test)]
    fn from_text(text: &str) -> Self {
        Manifest {
            dir: PathBuf::new(),
            text: text.to_owned(),
        }
    }

    /// `(section, key)` for every `key = value` line, `section` without brackets.
    fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut section = "";
        self.text.lines().filter_map(move |line| {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.trim_matches(|c| c == '[' || c == ']').trim();
                return None;
            }
            if line.starts_with('#') {
                return None;
            }
            let key = line.split_once('=')?.0.trim();
            Some((section, key))
        })
    }

    fn sections(&self) -> impl Iterator<Item = &str> {
        self.text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with('['))
            .map(|line| line.trim_matches(|c| c == '[' || c == ']').trim())
    }

    pub(crate) fn package_name(&self) -> Result<String> {
        for line in self.section_lines("package") {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "name" {
                    return Ok(value.trim().trim_matches('"').to_owned());
                }
            }
        }
        bail!(
            "{}/Cargo.toml has no `name` under [package]",
            self.dir.display()
        )
    }

    fn section_lines<'a>(&'a self, wanted: &'a str) -> impl Iterator<Item = &'a str> {
        let mut section = "";
        self.text.lines().filter(move |line| {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.trim_matches(|c| c == '[' || c == ']').trim();
                return false;
            }
            section == wanted
        })
    }

    pub(crate) fn declares_feature(&self, feature: &str) -> bool {
        self.entries()
            .any(|(section, key)| section == "features" && key == feature)
    }

    /// Whether any dependency table names `dependency`
    /// (`tch = ...`, `tch.workspace = true`, `[dependencies.tch]`, target-specific too).
    pub(crate) fn depends_on(&self, dependency: &str) -> bool {
        let is_dependency_table = |section: &str| section.ends_with("dependencies");
        let names_it = |key: &str| {
            key == dependency
                || key
                    .strip_prefix(dependency)
                    .is_some_and(|rest| rest.starts_with('.'))
        };
        self.entries()
            .any(|(section, key)| is_dependency_table(section) && names_it(key))
            || self.sections().any(|section| {
                section
                    .rsplit_once('.')
                    .is_some_and(|(table, name)| is_dependency_table(table) && name == dependency)
            })
    }

    /// Whether the package has binary targets (`[[bin]]` or `src/bin/`).
    pub(crate) fn has_bins(&self) -> bool {
        self.text.lines().any(|line| line.trim() == "[[bin]]") || self.dir.join("src/bin").is_dir()
    }
}

/// The directories listed in the root manifest's `members = [...]`.
pub(crate) fn workspace_members(root: &Path) -> Result<Vec<PathBuf>> {
    let text = read_to_string(&root.join("Cargo.toml"))?;
    // The first line that starts with `members` (not `default-members`).
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("members") {
            start = Some(offset);
            break;
        }
        offset += line.len();
    }
    let Some(start) = start else {
        bail!("no `members` in {}/Cargo.toml", root.display());
    };
    let rest = &text[start..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        bail!(
            "cannot read `members = [...]` in {}/Cargo.toml",
            root.display()
        );
    };
    let mut members = Vec::new();
    for entry in rest[open + 1..close].split(',') {
        let entry = entry
            .lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .collect::<String>();
        let entry = entry.trim().trim_matches('"');
        if entry.is_empty() {
            continue;
        }
        if entry.contains('*') {
            bail!("workspace member glob `{entry}` is not supported by xtask; list members one by one");
        }
        members.push(root.join(entry));
    }
    Ok(members)
}

/// Every workspace member's manifest, in `members` order.
pub(crate) fn workspace_manifests(root: &Path) -> Result<Vec<Manifest>> {
    workspace_members(root)?
        .iter()
        .map(|dir| Manifest::read(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tch_in_every_spelling() {
        for text in [
            "[dependencies]\ntch = \"=0.24.0\"\n",
            "[dependencies]\ntch.workspace = true\n",
            "[dependencies.tch]\nversion = \"0.24\"\n",
            "[target.'cfg(unix)'.dependencies]\ntch = { version = \"0.24\" }\n",
        ] {
            assert!(Manifest::from_text(text).depends_on("tch"), "{text}");
        }
        for text in [
            "[dependencies]\np2p-core.workspace = true\n",
            "[dependencies]\ntch-extra = \"1\"\n",
            "[features]\ntch = []\n",
            "[dependencies]\n# tch = \"=0.24.0\"\n",
        ] {
            assert!(!Manifest::from_text(text).depends_on("tch"), "{text}");
        }
    }

    #[test]
    fn reads_features_and_name() {
        let manifest = Manifest::from_text(
            "[package]\nname = \"p2p-core\"\n\n[features]\n# comment\ncuda-tests = []\n\n[dependencies]\nx = 1\n",
        );
        assert_eq!(manifest.package_name().unwrap(), "p2p-core");
        assert!(manifest.declares_feature("cuda-tests"));
        assert!(!manifest.declares_feature("x"));
    }

    #[test]
    fn reads_this_workspace() {
        let root = crate::util::project_root();
        let names: Vec<String> = workspace_manifests(&root)
            .unwrap()
            .iter()
            .map(|m| m.package_name().unwrap())
            .collect();
        assert!(names.iter().any(|name| name == "xtask"), "{names:?}");
        assert!(names.iter().any(|name| name == "p2p-core"), "{names:?}");
    }
}
