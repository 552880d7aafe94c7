//! Source checks that run with plain `cargo test`: module docs, no debugging leftovers, reasons on ignored tests, `unsafe` kept in its place.
//!
//! Modelled on rust-analyzer's `xtask/src/tidy.rs`. Each check reads every
//! `.rs` file under [`CHECKED_DIRS`] and reports all violations as `path:line`.

use std::path::{Path, PathBuf};

use crate::util::project_root;

/// The files that may hold `unsafe` code (blocks, `unsafe impl`, `unsafe
/// extern`, `#[unsafe(...)]`), by exact path from the repository root; an
/// entry ending in `/` allows the files under that directory. Exact, as in
/// rust-analyzer's tidy: a new file named like an allowed one (`raw_x.rs`,
/// `my_ffi.rs`) is not allowed by accident. Declaring an `unsafe fn` or
/// `unsafe trait` is allowed anywhere: it states a contract, and with
/// `unsafe_op_in_unsafe_fn` denied its body still needs a block to do anything.
///
/// p2p-core keeps it in its backend layer: the `Driver` trait that states
/// the contracts, the owning wrappers, the CUDA backend (its driver calls all
/// in `cuda/ffi/`), the simulated device's memory, and the probe's raw copy.
/// Other crates keep it in few named modules. Tests may call unsafe APIs
/// anywhere (with `// SAFETY:` comments).
const UNSAFE_ALLOWED_IN: &[&str] = &[
    "crates/p2p-core/src/driver.rs",
    "crates/p2p-core/src/memory.rs",
    "crates/p2p-core/src/cuda/mod.rs",
    "crates/p2p-core/src/cuda/backend.rs",
    "crates/p2p-core/src/cuda/ffi/",
    "crates/p2p-core/src/sim/",
    "crates/p2p-core/src/probe/raw_copy.rs",
    "crates/p2p-core/tests/",
    "crates/p2p-move/src/exec/",
    // The one call that queues a move of cudarc slices (`copy_raw_async`).
    "crates/p2p-move/src/cudarc_slices.rs",
    "crates/p2p-move/tests/",
    // The loader of libtorch_cuda (the only FFI) and the copies queued on tensors.
    "crates/p2p-tch/src/raw/loader.rs",
    "crates/p2p-tch/src/raw/queued.rs",
    "crates/p2p-tch/tests/",
    // `p2p bench`: raw peer copies timed on their own stream, and poisoning destinations.
    "crates/p2p-cli/src/bench/raw.rs",
    // Benchmarks of the unsafe raw APIs against the safe ones.
    "benches/src/gpu/latency.rs",
    "benches/src/gpu/peer.rs",
    "benches/src/raw_baselines.rs",
    // The driver's batched copy with each of its options (its own FFI, as the bench measures it).
    "benches/src/raw_batch.rs",
    // One GPU shown as two devices: a `Driver` forwarding every unsafe call.
    "benches/src/gpu/loopback.rs",
    "benches/tests/",
    "benches/src/raw_ranges.rs",
    // The simulated moves whose driver calls are counted (`copy_async`, buffers as move sides).
    "benches/src/sim_moves.rs",
];

/// Whether `path` (from the repository root) is allowed to hold `unsafe` code.
fn unsafe_allowed(path: &Path) -> bool {
    let path = path.to_string_lossy().replace('\\', "/");
    UNSAFE_ALLOWED_IN
        .iter()
        .any(|allowed| match allowed.strip_suffix('/') {
            Some(dir) => path.starts_with(dir) && path[dir.len()..].starts_with('/'),
            None => path == *allowed,
        })
}

/// Directories (from the repository root) whose `.rs` files are checked.
const CHECKED_DIRS: &[&str] = &["crates", "xtask", "benches"];

/// Macros that are for debugging or unfinished work, not for the repository.
const FORBIDDEN_MACROS: &[&str] = &["dbg", "todo", "unimplemented"];

/// How far above an `unsafe` block its `// SAFETY:` comment may start.
const SAFETY_COMMENT_REACH: usize = 3;

#[test]
fn files_start_with_module_docs() {
    check_all(|file, violations| {
        let first = file.text.lines().enumerate().find(|(_, line)| {
            let line = line.trim();
            !(line.is_empty() || line.starts_with("#!["))
        });
        match first {
            Some((_, line)) if line.trim_start().starts_with("//!") => {}
            Some((index, _)) => violations.push(file.at(
                index,
                "file must start with a `//!` line saying what it owns",
            )),
            None => violations.push(file.at(0, "empty file: it must start with a `//!` line")),
        }
    });
}

#[test]
fn no_debugging_macros() {
    check_all(|file, violations| {
        for (index, code) in file.code.iter().enumerate() {
            for name in FORBIDDEN_MACROS {
                if find_word(code, name).any(|end| code[end..].starts_with("!(")) {
                    violations.push(file.at(index, &format!("`{name}!(` left in code")));
                }
            }
        }
    });
}

#[test]
fn ignored_tests_say_why() {
    check_all(|file, violations| {
        let mut attribute_depth = 0i32;
        for (index, code) in file.code.iter().enumerate() {
            let trimmed = code.trim_start();
            let in_attribute = attribute_depth > 0 || trimmed.starts_with("#[");
            if !in_attribute {
                continue;
            }
            attribute_depth += code.matches('[').count() as i32 - code.matches(']').count() as i32;
            attribute_depth = attribute_depth.max(0);
            for end in find_word(code, "ignore") {
                let reason_follows = code[end..].trim_start().starts_with('=');
                if !reason_follows {
                    violations.push(file.at(
                        index,
                        "`ignore` without a reason: write `#[ignore = \"needs two GPUs\"]`",
                    ));
                } else if file.lines[index].contains("ignore = \"\"") {
                    violations.push(file.at(index, "`ignore` with an empty reason"));
                }
            }
        }
    });
}

#[test]
fn unsafe_blocks_have_safety_comments() {
    check_all(|file, violations| {
        for (index, code) in file.code.iter().enumerate() {
            let opens_block =
                find_word(code, "unsafe").any(|end| code[end..].trim_start().starts_with('{'));
            if opens_block && !has_safety_comment(&file.lines, index) {
                violations.push(file.at(
                    index,
                    &format!("`unsafe` block without a `// SAFETY:` comment on its line or the {SAFETY_COMMENT_REACH} above"),
                ));
            }
        }
    });
}

#[test]
fn unsafe_only_where_allowed() {
    let hint = format!(
        "Move the unsafe code into one of {UNSAFE_ALLOWED_IN:?}, \
         or add its exact path to UNSAFE_ALLOWED_IN in xtask/src/tidy.rs.\n"
    );
    check_all_with_hint(&hint, |file, violations| {
        if unsafe_allowed(&file.path) {
            return;
        }
        for (index, code) in file.code.iter().enumerate() {
            let declares_only = |end: usize| {
                let rest = code[end..].trim_start();
                ["fn ", "trait "]
                    .iter()
                    .any(|keyword| rest.starts_with(keyword))
            };
            if find_word(code, "unsafe").any(|end| !declares_only(end)) {
                violations.push(file.at(index, "`unsafe` outside the files allowed to hold it"));
            }
        }
    });
}

#[test]
fn unsafe_allow_list_names_paths_that_exist() {
    let root = project_root();
    let stale: Vec<&str> = UNSAFE_ALLOWED_IN
        .iter()
        .copied()
        .filter(|allowed| !root.join(allowed.trim_end_matches('/')).exists())
        .collect();
    assert!(
        stale.is_empty(),
        "UNSAFE_ALLOWED_IN in xtask/src/tidy.rs names paths that do not exist: {stale:?}"
    );
}

#[test]
fn unsafe_allow_list_matches_exact_paths_only() {
    assert!(unsafe_allowed(Path::new(
        "crates/p2p-core/src/cuda/ffi/peer.rs"
    )));
    assert!(unsafe_allowed(Path::new(
        "crates/p2p-tch/src/raw/loader.rs"
    )));
    assert!(!unsafe_allowed(Path::new(
        "crates/p2p-tch/src/raw/in_flight.rs"
    )));
    assert!(!unsafe_allowed(Path::new(
        "crates/p2p-tch/src/raw_extra.rs"
    )));
    assert!(!unsafe_allowed(Path::new(
        "crates/p2p-core/src/cuda/ffi_helpers.rs"
    )));
    assert!(!unsafe_allowed(Path::new("crates/p2p-move/src/my_ffi.rs")));
    assert!(!unsafe_allowed(Path::new(
        "x/crates/p2p-core/src/driver.rs"
    )));
}

/// A `// SAFETY:` comment on line `index`, on one of the lines just above, or
/// anywhere in the run of comment lines directly above (a long explanation).
/// Like clippy's `undocumented_unsafe_blocks`, a comment above a match arm
/// does not cover a block on the next line.
fn has_safety_comment(lines: &[&str], index: usize) -> bool {
    const MARKER: &str = "// SAFETY:";
    if lines[index].contains(MARKER) {
        return true;
    }
    let above = lines[..index].iter().rev();
    let near = above
        .clone()
        .take(SAFETY_COMMENT_REACH)
        .any(|line| line.contains(MARKER));
    let comment_run = above
        .take_while(|line| line.trim_start().starts_with("//"))
        .any(|line| line.contains(MARKER));
    near || comment_run
}

/// One source file: its path from the root, its lines, and the same lines with
/// comments removed and the insides of string and char literals blanked.
struct SourceFile<'a> {
    path: PathBuf,
    lines: Vec<&'a str>,
    code: Vec<String>,
    text: &'a str,
}

impl SourceFile<'_> {
    fn at(&self, index: usize, message: &str) -> String {
        format!("{}:{}: {message}", self.path.display(), index + 1)
    }
}

fn check_all(check: impl Fn(&SourceFile<'_>, &mut Vec<String>)) {
    check_all_with_hint("", check);
}

/// [`check_all`], with `hint` printed after the violations.
fn check_all_with_hint(hint: &str, check: impl Fn(&SourceFile<'_>, &mut Vec<String>)) {
    let root = project_root();
    let mut violations = Vec::new();
    let mut files = Vec::new();
    for dir in CHECKED_DIRS {
        collect_rust_files(&root.join(dir), &mut files);
    }
    assert!(
        !files.is_empty(),
        "no .rs files found under {CHECKED_DIRS:?} in {}",
        root.display()
    );
    for path in files {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        let mut lexer = Lexer::default();
        let lines: Vec<&str> = text.lines().collect();
        let code = lines.iter().map(|line| lexer.code_of(line)).collect();
        let relative = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
        let file = SourceFile {
            path: relative,
            lines,
            code,
            text: &text,
        };
        check(&file, &mut violations);
    }
    assert!(
        violations.is_empty(),
        "{} tidy violation(s):\n{}\n{hint}",
        violations.len(),
        violations.join("\n")
    );
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rust_files(&path, files);
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
}

/// Byte offsets just past each whole-word occurrence of `word` in `code`.
fn find_word<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).filter_map(move |(start, _)| {
        let end = start + word.len();
        let before_ok = !code[..start].chars().next_back().is_some_and(is_ident);
        let after_ok = !code[end..].chars().next().is_some_and(is_ident);
        (before_ok && after_ok).then_some(end)
    })
}

/// Strips comments and blanks literals line by line, carrying block comments
/// and multi-line strings over to the next line. Enough of Rust's lexer for
/// these checks, not a parser.
#[derive(Default)]
struct Lexer {
    block_comment_depth: usize,
    in_string: bool,
    /// Inside a raw string closed by `"` and this many `#`.
    raw_string_hashes: Option<usize>,
}

impl Lexer {
    fn code_of(&mut self, line: &str) -> String {
        let chars: Vec<char> = line.chars().collect();
        let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
        let is_ident = |c: char| c.is_alphanumeric() || c == '_';
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if self.block_comment_depth > 0 {
                if c == '/' && at(i + 1) == '*' {
                    self.block_comment_depth += 1;
                    i += 2;
                } else if c == '*' && at(i + 1) == '/' {
                    self.block_comment_depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
                continue;
            }
            if let Some(hashes) = self.raw_string_hashes {
                if c == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    self.raw_string_hashes = None;
                    out.push('"');
                    i += 1 + hashes;
                } else {
                    i += 1;
                }
                continue;
            }
            if self.in_string {
                if c == '\\' {
                    i += 2;
                } else {
                    if c == '"' {
                        self.in_string = false;
                        out.push('"');
                    }
                    i += 1;
                }
                continue;
            }
            match c {
                '/' if at(i + 1) == '/' => break,
                '/' if at(i + 1) == '*' => {
                    self.block_comment_depth = 1;
                    i += 2;
                }
                '"' => {
                    self.in_string = true;
                    out.push('"');
                    i += 1;
                }
                'r' if !is_ident(if i == 0 { ' ' } else { chars[i - 1] })
                    || raw_after_b(&chars, i) =>
                {
                    let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
                    if at(i + 1 + hashes) == '"' {
                        self.raw_string_hashes = Some(hashes);
                        out.push('"');
                        i += 2 + hashes;
                    } else {
                        out.push(c);
                        i += 1;
                    }
                }
                '\'' if at(i + 1) == '\\' => {
                    // Escaped char literal: skip to its closing quote.
                    let close = (i + 3..chars.len())
                        .find(|&j| chars[j] == '\'')
                        .unwrap_or(chars.len() - 1);
                    out.push_str("''");
                    i = close + 1;
                }
                '\'' if at(i + 2) == '\'' => {
                    out.push_str("''");
                    i += 3;
                }
                _ => {
                    // Lifetimes and everything else are code.
                    out.push(c);
                    i += 1;
                }
            }
        }
        out
    }
}

/// `br"..."`: an `r` preceded by a `b` that itself starts a token.
fn raw_after_b(chars: &[char], i: usize) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    i >= 1 && chars[i - 1] == 'b' && (i == 1 || !is_ident(chars[i - 2]))
}

#[cfg(test)]
mod lexer_tests {
    use super::*;

    fn code(text: &str) -> Vec<String> {
        let mut lexer = Lexer::default();
        text.lines().map(|line| lexer.code_of(line)).collect()
    }

    #[test]
    fn strips_comments_and_literals() {
        // Built with concat! so that text searches for leftovers skip this file.
        assert_eq!(code(concat!("let x = 1; // db", "g!(x)")), ["let x = 1; "]);
        assert_eq!(code(r#"let s = "unsafe { }";"#), [r#"let s = "";"#]);
        assert_eq!(
            code(concat!(r###"let s = r#"to"###, r###"do!()"#; f()"###)),
            [r#"let s = ""; f()"#]
        );
        assert_eq!(code(r#"let c = '"'; g("x")"#), [r#"let c = ''; g("")"#]);
        assert_eq!(
            code(r"let c = '\''; fn f<'a>(x: &'a u8) {}"),
            [r"let c = ''; fn f<'a>(x: &'a u8) {}"]
        );
        assert_eq!(code("a /* unsafe\n { */ b"), ["a ", " b"]);
        assert_eq!(
            code(concat!("let s = \"one\nto", "do!() two\"; c")),
            ["let s = \"", "\"; c"]
        );
        assert_eq!(code(r#"let b = br"unsafe"; rx"#), [r#"let b = b""; rx"#]);
    }

    #[test]
    fn finds_whole_words() {
        assert_eq!(find_word("unsafe { x }", "unsafe").count(), 1);
        assert_eq!(find_word("unsafe_op_in_unsafe_fn", "unsafe").count(), 0);
        assert_eq!(find_word(concat!("my_db", "g!(x)"), "dbg").count(), 0);
    }

    #[test]
    fn safety_comment_reach() {
        let lines = [
            "// SAFETY: a",
            "// b",
            "// c",
            "// d",
            "// e",
            "unsafe { f() }",
        ];
        assert!(has_safety_comment(&lines, 5));
        let lines = [
            "// SAFETY: a",
            "// b",
            "// c",
            "[x] => {",
            "    unsafe { f() }",
        ];
        assert!(!has_safety_comment(&lines, 4));
        let lines = ["// SAFETY: a", "let x = 1;", "", "", "", "unsafe { f() }"];
        assert!(!has_safety_comment(&lines, 5));
        let lines = [
            "// SAFETY: a",
            "let x = 1;",
            "// unrelated",
            "",
            "",
            "unsafe { f() }",
        ];
        assert!(!has_safety_comment(&lines, 5));
    }
}
