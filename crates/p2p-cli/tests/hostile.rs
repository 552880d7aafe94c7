//! The `p2p` binary against hostile arguments, environment and topology
//! files, every subcommand: each gets a clear error and a non-zero exit
//! code (or, where the input is merely odd, a normal run), never a panic,
//! an abort or a hang; and `p2p env`, whose output is made for `eval`,
//! never lets input become a shell command.

mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::{p2p_command, run_watched, topology, write_file};

/// Runs `p2p` with a private cache folder, a short probe deadline, no
/// cache use and `env` on top; kills it and fails the test after 60 s.
fn p2p(args: &[&str], env: &[(&str, &OsStr)]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut command = p2p_command(args, cache.path());
    command
        .env("P2P_PROBE_TIMEOUT_MS", "100")
        .env("P2P_NO_CACHE", "1")
        .env_remove("CUDA_VISIBLE_DEVICES")
        .envs(env.iter().copied());
    run_watched(command, &format!("p2p {args:?}"))
}

/// Neither a panic nor a signal (an abort, a stack overflow).
fn no_crash(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code().is_some(),
        "{what}: killed by a signal: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

/// Exit 1 or 2 (clap's usage errors), with each of `needles` on stderr.
fn refused(output: &Output, what: &str, needles: &[&str]) {
    no_crash(output, what);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(1 | 2)),
        "{what}: exit {:?}: {stderr}",
        output.status
    );
    for needle in needles {
        assert!(stderr.contains(needle), "{what}: no {needle:?} in {stderr}");
    }
}

#[test]
fn hostile_arguments_to_every_subcommand() {
    let sim = topology("every-fault.toml");
    let s = sim.as_str();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["probe", "--sim", s, "--schedule-seed", "x"],
            &["--schedule-seed"],
        ),
        (
            &[
                "probe",
                "--sim",
                s,
                "--probe-timeout-ms",
                "18446744073709551616",
            ],
            &["--probe-timeout-ms"],
        ),
        (&["probe", "--sim", ""], &["--sim"]),
        (
            &["probe", "--sim", "/nonexistent/t.toml"],
            &["/nonexistent/t.toml"],
        ),
        (&["probe", "--sim", "/dev/zero"], &["not a regular file"]),
        (&["probe", "--sim", "/"], &["not a regular file"]),
        (
            &[
                "plan",
                "--sim",
                s,
                "--from",
                "cuda:18446744073709551615",
                "--to",
                "cpu",
                "--bytes",
                "1",
            ],
            &["does not exist"],
        ),
        (
            &[
                "plan", "--sim", s, "--from", "cuda:-1", "--to", "cpu", "--bytes", "1",
            ],
            &["--from"],
        ),
        (
            &[
                "plan", "--sim", s, "--from", "cpu", "--to", "cuda:0", "--bytes", "16EiB",
            ],
            &["--bytes"],
        ),
        (
            &[
                "plan", "--sim", s, "--from", "cpu", "--to", "cuda:0", "--bytes", "-1",
            ],
            &["--bytes"],
        ),
        (
            &["plan", "--sim", s, "--from", "cpu", "--to", "cuda:0"],
            &["--bytes"],
        ),
        (&["verify", "--sim", s, "--moves", "-3"], &["-3"]),
        (
            &["verify", "--sim", s, "--max-bytes", "16383PiB"],
            &["--max-bytes"],
        ),
        (
            &["bench", "--sim", s, "--iterations", "0"],
            &["--iterations"],
        ),
        (
            &[
                "bench",
                "--sim",
                s,
                "--pair",
                "0->99",
                "--size",
                "4KiB",
                "--iterations",
                "1",
            ],
            &["99"],
        ),
        (&["bench", "--sim", s, "--pair", "1->1"], &["--pair"]),
        (
            &["bench", "--sim", s, "--case", "no-such-case"],
            &["no-such-case"],
        ),
        (
            &[
                "bench",
                "--sim",
                s,
                "--size",
                "4KiB",
                "--iterations",
                "1",
                "--case",
                "peer-latency",
                "--markdown",
                "/",
            ],
            &["--markdown"],
        ),
        (&["env", "--sim", s, "--require-gpu"], &["--require-gpu"]),
        (&["frobnicate"], &["frobnicate"]),
    ];
    for (args, needles) in cases {
        let output = p2p(args, &[]);
        refused(&output, &format!("{args:?}"), needles);
    }
    // Odd but legal: a normal run.
    for args in [
        &[
            "plan",
            "--sim",
            s,
            "--from",
            "cpu",
            "--to",
            "cpu",
            "--bytes",
            "18446744073709551615",
        ][..],
        &[
            "plan", "--sim", s, "--from", "cuda:0", "--to", "cuda:0", "--bytes", "0",
        ],
        &["verify", "--sim", s, "--moves", "0"],
        &["verify", "--sim", s, "--moves", "7", "--max-bytes", "0"],
    ] {
        let output = p2p(args, &[]);
        no_crash(&output, &format!("{args:?}"));
        assert!(output.status.success(), "{args:?}: {output:?}");
    }
}

#[test]
fn hostile_environment() {
    let sim = topology("every-fault.toml");
    let probe = ["probe", "--sim", sim.as_str()];
    let not_utf8 = OsStr::from_bytes(b"0->1\xff");
    for name in ["P2P_DISABLE", "P2P_REPROBE", "P2P_PROBE_TIMEOUT_MS"] {
        let output = p2p(&probe, &[(name, not_utf8)]);
        refused(&output, name, &[name, "not UTF-8"]);
    }
    for (name, value) in [
        ("P2P_DISABLE", "0->1,"),
        ("P2P_DISABLE", "0->99"),
        ("P2P_DISABLE", "0->18446744073709551616"),
        ("P2P_DISABLE", "\u{1b}[31m"),
        ("P2P_REPROBE", "maybe"),
        ("P2P_NO_CACHE", "2"),
        ("P2P_PROBE_TIMEOUT_MS", "0"),
        ("P2P_PROBE_TIMEOUT_MS", "-5"),
        ("P2P_PROBE_TIMEOUT_MS", "1e3"),
    ] {
        let output = p2p(&probe, &[(name, OsStr::new(value))]);
        refused(&output, &format!("{name}={value:?}"), &[name]);
    }
    // A cache folder that is not UTF-8 is still a folder: it is used.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join(OsStr::from_bytes(b"cache-\xff"));
    let output = p2p(
        &probe,
        &[
            ("P2P_CACHE_DIR", odd.as_os_str()),
            ("P2P_NO_CACHE", OsStr::new("0")),
        ],
    );
    no_crash(&output, "a cache folder that is not UTF-8");
    assert!(output.status.success(), "{output:?}");
    assert!(odd.is_dir(), "the verdicts went to {}", odd.display());
    // Cache places that cannot be used: warnings, and the command works.
    for place in ["/dev/null", "/proc/version/x"] {
        let output = p2p(
            &probe,
            &[
                ("P2P_CACHE_DIR", OsStr::new(place)),
                ("P2P_NO_CACHE", OsStr::new("0")),
            ],
        );
        no_crash(&output, place);
        assert!(output.status.success(), "{place}: {output:?}");
    }
    // Seeds and log filters that mean nothing: warnings or defaults, no failure.
    for (name, value) in [
        ("P2P_SIM_SEED", "abc"),
        ("P2P_SIM_SEEDS", "-1"),
        ("P2P_LOG", "[[["),
    ] {
        let output = p2p(&probe, &[(name, OsStr::new(value))]);
        no_crash(&output, name);
        assert!(output.status.success(), "{name}: {output:?}");
    }
}

#[test]
fn odd_topology_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: Vec<(String, &[&str])> = vec![
        (
            write_file(d, "many.toml", "[[gpu]]\n".repeat(20_000).as_bytes()),
            &["20000 GPUs", "1024"],
        ),
        (
            write_file(
                d,
                "nested.toml",
                format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes(),
            ),
            &["nested.toml"],
        ),
        (
            write_file(d, "binary.toml", b"\xff\xfe\x00[[gpu]]"),
            &["binary.toml", "UTF-8"],
        ),
        (
            write_file(
                d,
                "negative.toml",
                b"[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = -1\nto = 1\n",
            ),
            &["negative.toml:"],
        ),
        (
            write_file(
                d,
                "huge.toml",
                b"[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 99999999999999999999\n",
            ),
            &["huge.toml:"],
        ),
        (
            write_file(d, "nan.toml", b"[[gpu]]\nhost_gbps = nan\n"),
            &["nan.toml:", "NaN"],
        ),
        (
            write_file(
                d,
                "inf.toml",
                b"[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\ngbps = inf\n",
            ),
            &["inf.toml:"],
        ),
        (
            write_file(d, "self.toml", b"[[gpu]]\n[[peer]]\nfrom = 0\nto = 0\n"),
            &["self.toml:"],
        ),
        (
            write_file(d, "type.toml", b"gpu = \"four\"\n"),
            &["type.toml:"],
        ),
        (
            write_file(
                d,
                "late.toml",
                b"[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"late\"\n",
            ),
            &["late_ms"],
        ),
    ];
    for (path, needles) in &cases {
        for command in ["probe", "env"] {
            let output = p2p(&[command, "--sim", path], &[]);
            refused(&output, &format!("{command} {path}"), needles);
        }
    }
    // Odd but valid: a speed too small to finish, a copy late by u64::MAX
    // ms, a GPU with no memory, a name with a NUL: a normal run or a clear error.
    for (name, text) in [
        ("tiny.toml", "[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\ngbps = 5e-324\n"),
        ("late.toml", "[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"late\"\nlate_ms = 18446744073709551615\n"),
        ("empty-gpu.toml", "[[gpu]]\nmemory_mib = 0\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\n"),
        ("nul.toml", "[[gpu]]\nname = \"a\\u0000b\"\n"),
    ] {
        let path = write_file(d, name, text.as_bytes());
        for args in [
            &["probe", "--sim", &path][..],
            &["verify", "--sim", &path, "--moves", "6", "--max-bytes", "64KiB"],
            &["plan", "--sim", &path, "--from", "cuda:0", "--to", "cuda:1", "--bytes", "1MiB"],
        ] {
            let output = p2p(args, &[]);
            no_crash(&output, &format!("{args:?}"));
            if !output.status.success() {
                // A clear error, or verify's own report of the moves that failed.
                let stderr = String::from_utf8_lossy(&output.stderr);
                let stdout = String::from_utf8_lossy(&output.stdout);
                let explained = stdout.contains("FAILED move")
                    || stderr.starts_with("error: ")
                    || stderr.contains("\nerror: ");
                assert!(explained, "{args:?}: {stderr}");
            }
        }
    }
}

/// Runs `script` under `sh -c` (as `eval "$(p2p env)"` would); whether `marker` appeared.
fn eval_creates(script: &[u8], marker: &Path) -> bool {
    let status = Command::new("sh")
        .arg("-c")
        .arg(OsStr::from_bytes(script))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let _ = status;
    marker.exists()
}

#[test]
fn env_output_never_runs_input_as_commands() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("PWNED");
    let m = marker.display().to_string();
    // A machine name with a line break, from a topology file.
    let named = write_file(
        dir.path(),
        "named.toml",
        format!(
            "[machine]\nname = \"box\\ntouch {m}\"\n[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"zeros\"\n"
        )
        .as_bytes(),
    );
    let output = p2p(&["env", "--sim", &named], &[]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        !eval_creates(&output.stdout, &marker),
        "the name ran: {output:?}"
    );
    // A CUDA_VISIBLE_DEVICES with shell syntax in its entries.
    let sim = topology("rtx4090x4.toml");
    for value in [
        format!("0;touch {m};"),
        format!("$(touch {m}),1"),
        format!("0,`touch {m}`"),
        format!("0' ; touch {m} ; '"),
    ] {
        let output = p2p(
            &["env", "--sim", &sim],
            &[("CUDA_VISIBLE_DEVICES", OsStr::new(&value))],
        );
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout
                .lines()
                .all(|l| l.starts_with('#') || l.starts_with("export ")),
            "{stdout}"
        );
        assert!(
            !eval_creates(&output.stdout, &marker),
            "{value:?} ran: {stdout}"
        );
    }
}
