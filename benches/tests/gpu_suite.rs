//! The whole gpu-bench suite on simulated machines (smallest sizes, few
//! reps): in loopback mode on one GPU and on two GPUs, every section must
//! run, every correctness check pass, the race detector find nothing, and
//! the markdown carry the rows and the notes that the result file and
//! BENCHMARKS.md are made from. Timings on a simulator mean nothing; what
//! is checked is which rows exist and what they say.

use std::path::Path;
use std::sync::Arc;

use p2p_benches::cli::Options;
use p2p_benches::gpu::{self, Machine, Mode, LOOPBACK_LABEL};
use p2p_core::{Driver, SimDriver};

fn sim(toml: &str) -> Arc<SimDriver> {
    Arc::new(SimDriver::from_toml_str(toml, Path::new("bench.toml")).unwrap())
}

fn quick() -> Options {
    Options {
        max_bytes: 64 << 10,
        quick: true,
        loopback: false,
    }
}

/// The markdown table under `## heading`, as lines starting with `|`.
fn table<'a>(markdown: &'a str, heading: &str) -> Vec<&'a str> {
    let start = markdown
        .find(&format!("## {heading}\n"))
        .unwrap_or_else(|| panic!("no `## {heading}` in\n{markdown}"));
    markdown[start..]
        .lines()
        .skip(1)
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| line.starts_with('|'))
        .collect()
}

fn rows_with<'a>(rows: &[&'a str], words: &str) -> Vec<&'a str> {
    rows.iter().copied().filter(|r| r.contains(words)).collect()
}

#[test]
fn one_gpu_runs_in_loopback_mode_and_skips_what_needs_a_second() {
    let sim = sim("[machine]\nname = \"one GPU\"\n[[gpu]]\n");
    let machine = Machine::new(sim.clone() as Arc<dyn Driver>, false).unwrap();
    assert_eq!(machine.mode, Mode::Loopback);
    let summary = gpu::run(machine, quick()).unwrap();
    assert!(summary.passed, "{}", summary.markdown);
    let md = &summary.markdown;

    let results = table(md, "Results");
    assert!(
        results[0].starts_with("| case | size | machine | route | ours | baseline | baseline is |"),
        "{}",
        results[0]
    );
    // Every row says it ran in loopback mode.
    assert!(results[2..]
        .iter()
        .all(|row| row.contains("| loopback (1 GPU as 2) |")));
    // The note after the table (which the result file keeps) says what loopback means.
    let after_results = &md[md.find(results[results.len() - 1]).unwrap()..];
    let note = after_results.lines().nth(2).unwrap();
    assert!(note.contains(LOOPBACK_LABEL), "{note}");
    assert!(note.contains("full duplex"), "{note}");

    // Staged at each size against its three baselines.
    for size in ["4 KiB", "64 KiB"] {
        let staged: Vec<&str> = rows_with(&results, "| staged (pinned pipeline) |")
            .into_iter()
            .filter(|r| r.contains(&format!("| {size} |")))
            .collect();
        assert_eq!(staged.len(), 3, "{staged:?}");
        assert_eq!(rows_with(&staged, "ExLlamaV2 fallback, raw").len(), 1);
        assert_eq!(rows_with(&staged, "sequential staging").len(), 1);
        assert_eq!(rows_with(&staged, "min(raw pinned D2H").len(), 1);
    }
    assert_eq!(rows_with(&results, "batch, peer broken").len(), 3);
    assert_eq!(
        rows_with(&results, "ExLlamaV2 fallback per tensor").len(),
        1
    );
    // The crossover at each extreme, at the sizes up to the largest buffer.
    for extreme in ["host_relay_bytes = 0", "host_relay_bytes = MAX"] {
        let rows = rows_with(&results, extreme);
        assert_eq!(rows.len(), 3, "{extreme}: {rows:#?}");
        assert!(rows.iter().all(|r| r.contains("sequential staging")));
    }
    let crossover = table(md, "Staged crossover: host relay or event chaining");
    assert_eq!(crossover.len(), 2 + 3, "{crossover:#?}");
    assert!(crossover[2].starts_with("| 4 KiB | loopback (1 GPU as 2) |"));
    // Non-blocking and batched copies on the one GPU, none across a pair.
    assert_eq!(
        rows_with(&results, "non-blocking 4 KiB, same device cuda:0").len(),
        4
    );
    assert!(rows_with(&results, "batch, same device cuda:0").len() >= 4);
    assert!(rows_with(&results, "| peer |").is_empty(), "{results:#?}");
    assert!(rows_with(&results, "via cuda").is_empty());
    for skipped in ["peer and pool memory rows skipped", "via rows skipped"] {
        assert!(md.contains(skipped), "{skipped}: {md}");
    }
    // The driver options table: the simulator has no raw batched copy, so
    // those rows are skipped, saying why; the rest are there.
    let options = table(md, "Batched device-to-device copies: every option");
    assert!(rows_with(&options, "our copy_batch of 256").len() == 1);
    assert!(rows_with(&options, "raw cuMemcpyAsync + one sync").len() == 1);
    assert!(md.contains("raw cuMemcpyBatchAsync options (same device cuda:0) skipped"));
    // Correctness lines for every checked route.
    for route in [
        "ok      staged (pinned pipeline)",
        "ok      baseline: sequential staging",
        "ok      baseline: ExLlamaV2 fallback, raw",
        "ok      staged, event chaining forced (host_relay_bytes = 0)",
        "ok      staged, host relay forced (host_relay_bytes = MAX)",
        "ok      batch, peer broken: copy_batch of 256",
        "ok      non-blocking 4 KiB, same device cuda:0",
        "ok      batch, same device cuda:0: copy_batch of 256",
    ] {
        assert!(md.contains(route), "{route}: {md}");
    }
    sim.check_clean().unwrap();
}

#[test]
fn two_gpus_run_the_peer_pair_and_say_so() {
    let sim = sim(
        "[machine]\nname = \"two GPUs\"\n[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nboth = true\n",
    );
    let machine = Machine::new(sim.clone() as Arc<dyn Driver>, false).unwrap();
    assert_eq!(machine.mode, Mode::Gpus(2));
    let summary = gpu::run(machine, quick()).unwrap();
    assert!(summary.passed, "{}", summary.markdown);
    let md = &summary.markdown;
    let results = table(md, "Results");
    assert!(results[2..].iter().all(|row| row.contains("| 2 GPUs |")));
    assert!(!md.contains(LOOPBACK_LABEL));
    assert!(!rows_with(&results, "peer (cuMemAlloc)").is_empty());
    assert_eq!(
        rows_with(&results, "non-blocking 4 KiB, peer cuda:0 -> cuda:1").len(),
        4
    );
    let batch = rows_with(&results, "batch, peer cuda:0 -> cuda:1: copy_batch");
    assert!(rows_with(&batch, "≥ 10× separate copies").len() == 1);
    // The one-GPU rows run here too, so loopback and two-GPU runs compare.
    assert_eq!(
        rows_with(&results, "non-blocking 4 KiB, same device cuda:0").len(),
        4
    );
    let same_device = rows_with(&results, "batch, same device cuda:0: copy_batch");
    assert!(same_device.len() >= 4);
    assert!(rows_with(&same_device, "≥ 10×").is_empty());
    // Peer broken: staged by policy on two GPUs.
    assert_eq!(rows_with(&results, "batch, peer broken").len(), 3);
    sim.check_clean().unwrap();
}

#[test]
fn loopback_can_be_asked_for_on_two_gpus() {
    let sim = sim("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nboth = true\n");
    let machine = Machine::new(sim.clone() as Arc<dyn Driver>, true).unwrap();
    assert_eq!(machine.mode, Mode::Loopback);
    assert_eq!(machine.driver.device_count(), 2);
    // Both views are cuda:0 of the machine: the pair is not claimed even
    // though the machine's own pair is.
    assert!(!machine.driver.claim(0, 1).unwrap().claimed());
    assert!(sim.claim(0, 1).unwrap().claimed());
}
