//! Driver calls per kind of move, counted on the simulated machine, and the
//! table they are reported in: committed as `benches/driver-calls.md` (a
//! test checks that the counts still match it) and written by the `moves`
//! criterion bench next to the CPU time of each move.
//!
//! Counting, not timing: the counts are exact and the same on every run
//! (eager simulated machine, fixed seed), so a change in how many driver
//! calls a move makes shows in `cargo test` without a GPU, and a change that
//! adds calls has to update the committed file on purpose.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::time::Duration;

use p2p_core::sim::{CallCounts, CallKind, Execution};

use crate::sim_moves::{catalogue, Call, MoveCase, SimMove};

/// Moves run before the counted one, so that streams, pooled events and
/// pinned buffers exist: the steady state of a mover in use.
pub const WARMUP_MOVES: usize = 3;

/// The committed counts, from the `benches` package's folder.
pub const EXPECTED_FILE: &str = "driver-calls.md";

/// Set to `1` to rewrite [`EXPECTED_FILE`] from the counts of this build
/// (`UPDATE_DRIVER_CALLS=1 cargo test -p p2p-benches driver_calls`).
pub const UPDATE_ENV: &str = "UPDATE_DRIVER_CALLS";

/// How the simulated machine runs while counting (and while the bench times
/// moves): eager, so every queued operation runs as soon as it can, as on a
/// GPU that keeps up, and the simulator's scheduling costs little.
pub const EXECUTION: Execution = Execution::Eager;

/// The driver calls of one kind of move.
#[derive(Clone, Debug, PartialEq)]
pub struct MoveCalls {
    /// The kind of move.
    pub case: MoveCase,
    /// Calls of the first move of a fresh mover (its pairs already probed).
    pub first: CallCounts,
    /// Calls of one move after [`WARMUP_MOVES`] others on the same mover.
    pub steady: CallCounts,
}

/// The calls one run of `rig` makes.
fn calls_of_one_move(rig: &mut SimMove) -> Result<CallCounts, Box<dyn Error>> {
    let before = rig.call_counts();
    rig.run()?;
    Ok(rig.call_counts().since(&before))
}

/// Counts the calls of `case`: the first move, and a steady-state move
/// (which must make the same calls as the move after it, or the counts
/// would depend on how many moves ran before).
pub fn count(case: &MoveCase) -> Result<MoveCalls, Box<dyn Error>> {
    let mut rig = SimMove::new(case, EXECUTION)?;
    let first = calls_of_one_move(&mut rig)?;
    for _ in 1..WARMUP_MOVES {
        rig.run()?;
    }
    let steady = calls_of_one_move(&mut rig)?;
    let next = calls_of_one_move(&mut rig)?;
    if next != steady {
        return Err(format!(
            "{}: no steady state: one move made {:?}, the next {:?}",
            case.name, steady, next
        )
        .into());
    }
    rig.check()?;
    Ok(MoveCalls {
        case: case.clone(),
        first,
        steady,
    })
}

/// Counts every case of the catalogue.
pub fn count_all() -> Result<Vec<MoveCalls>, Box<dyn Error>> {
    catalogue().iter().map(count).collect()
}

/// The kinds of call some steady-state move makes, in [`CallKind::ALL`]'s order.
fn columns(rows: &[MoveCalls]) -> Vec<CallKind> {
    CallKind::ALL
        .into_iter()
        .filter(|&kind| rows.iter().any(|row| row.steady.of(kind) > 0))
        .collect()
}

/// What each column counts, for the legend under the table.
fn meaning(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Copy => {
            "`cuMemcpy{Peer,DtoH,HtoD}Async`, or one `cuMemcpyBatchAsync` for a whole batch \
             (the CUDA backend's call where the driver has it, 12.8+; older drivers take one \
             call per copy of the batch)"
        }
        CallKind::Memset => "`cuMemsetD8Async`",
        CallKind::CreateEvent => "`cuEventCreate`",
        CallKind::DestroyEvent => "`cuEventDestroy`",
        CallKind::Record => "`cuEventRecord`",
        CallKind::Wait => "`cuStreamWaitEvent` (a cross-stream hop)",
        CallKind::Query => "`cuEventQuery` / `cuStreamQuery` asked once",
        CallKind::HostWait => "host waits with a deadline (`wait_event`, `wait_stream`)",
        CallKind::Synchronize => "`cuStreamSynchronize`",
        CallKind::CreateStream => "`cuStreamCreate`",
        CallKind::DestroyStream => "`cuStreamDestroy`",
        CallKind::AllocPinned => "`cuMemAllocHost`",
        CallKind::FreePinned => "`cuMemFreeHost`",
        CallKind::AllocDevice => "`cuMemAlloc`",
        CallKind::FreeDevice => "`cuMemFree`",
        CallKind::Pool => "memory-pool lookups and grants",
        CallKind::Claim => "`cuDeviceCanAccessPeer`",
        CallKind::EnablePeer => "`cuCtxEnablePeerAccess`",
        CallKind::DisablePeer => "`cuCtxDisablePeerAccess`",
        CallKind::Elapsed => "`cuEventElapsedTime`",
        _ => "another driver call",
    }
}

/// The API a case calls, for the table.
fn api(case: &MoveCase) -> &'static str {
    match case.call {
        Call::Blocking => "copy",
        Call::Async {
            src_stream: false,
            dst_stream: false,
        } => "copy_async + wait",
        Call::Async {
            src_stream: false,
            dst_stream: true,
        } => "copy_async (dst stream) + wait",
        Call::Async {
            src_stream: true,
            dst_stream: false,
        } => "copy_async (src stream) + wait",
        Call::Async { .. } => "copy_async (both streams) + wait",
        Call::Batch => "copy_batch",
    }
}

/// Our CPU time per move of the case named, where it was timed.
pub type TimeOf<'a> = &'a dyn Fn(&str) -> Option<Duration>;

/// The counts as a markdown table (with a legend); with `time`, a column
/// of our CPU time per move, from the bench (`None` for a case not timed).
pub fn table(rows: &[MoveCalls], time: Option<TimeOf<'_>>) -> String {
    let kinds = columns(rows);
    let mut out = String::from("| move | call | size | route |");
    for kind in &kinds {
        let _ = write!(out, " {kind} |");
    }
    out += " total | first move |";
    if time.is_some() {
        out += " CPU time per move |";
    }
    out += "\n|---|---|---|---|";
    out += &"---:|".repeat(kinds.len() + 2 + usize::from(time.is_some()));
    out += "\n";
    for row in rows {
        let case = &row.case;
        let _ = write!(
            out,
            "| {} | {} | {} | {} |",
            case.name,
            api(case),
            case.size(),
            case.route
        );
        for &kind in &kinds {
            let _ = write!(out, " {} |", row.steady.of(kind));
        }
        let _ = write!(out, " {} | {} |", row.steady.total(), row.first.total());
        if let Some(time) = time {
            match time(case.name) {
                Some(t) if t < Duration::from_millis(1) => {
                    let _ = write!(out, " {:.1} µs |", t.as_secs_f64() * 1e6);
                }
                Some(t) => {
                    let _ = write!(out, " {:.2} ms |", t.as_secs_f64() * 1e3);
                }
                None => out += " not run |",
            }
        }
        out += "\n";
    }
    out += "\n";
    for kind in kinds {
        let _ = writeln!(out, "* {kind}: {}", meaning(kind));
    }
    out += "* total: every driver call of one move; first move: the total of the first move of \
            a fresh mover, which also creates its streams, events and pinned buffers\n";
    out
}

/// The text of [`EXPECTED_FILE`] for these counts.
pub fn expected_file(rows: &[MoveCalls]) -> String {
    let mut out = String::from(
        "# Driver calls per move, on the simulated machine\n\n\
         <!-- Checked by `cargo test -p p2p-benches` (driver_calls); after a change that \
         means to change the counts, regenerate with \
         `UPDATE_DRIVER_CALLS=1 cargo test -p p2p-benches driver_calls`. -->\n\n",
    );
    let _ = write!(
        out,
        "Each row counts the driver calls of one move, made after {WARMUP_MOVES} moves of the \
         same kind on the same mover, on the built-in simulated machine (4 GPUs; peer moves go \
         cuda:0 -> cuda:1; staged and via moves go cuda:2 -> cuda:3, whose peer path delivers \
         zeros) in eager mode (every queued operation runs as soon as it can: a GPU that keeps \
         up, so no query ever answers \"not yet\"). `cargo xtask bench` prints the same table \
         with our CPU time per move (`target/criterion/driver-calls.md`).\n\n"
    );
    out += &table(rows, None);
    out
}

/// The counts of a table made by [`table`]: per move, per column heading
/// (call kinds, `total`, `first move`).
pub fn parse_counts(text: &str) -> Result<BTreeMap<String, BTreeMap<String, u64>>, String> {
    let mut lines = text.lines().filter(|line| line.starts_with('|'));
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_string())
            .collect()
    };
    let header = cells(lines.next().ok_or("no table")?);
    if header.first().map(String::as_str) != Some("move") {
        return Err(format!(
            "the table's first column is not `move`: {header:?}"
        ));
    }
    let mut moves = BTreeMap::new();
    for line in lines.skip(1) {
        let row = cells(line);
        if row.len() != header.len() {
            return Err(format!(
                "a row of {} cells under {} headings: {line}",
                row.len(),
                header.len()
            ));
        }
        let counts = header
            .iter()
            .zip(&row)
            .filter_map(|(heading, cell)| cell.parse().ok().map(|n| (heading.clone(), n)))
            .collect();
        moves.insert(row[0].clone(), counts);
    }
    Ok(moves)
}

/// What differs between the committed counts and these, one line each
/// (a missing column counts as zero).
pub fn differences(
    committed: &BTreeMap<String, BTreeMap<String, u64>>,
    now: &BTreeMap<String, BTreeMap<String, u64>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = committed.keys().chain(now.keys()).collect();
    for name in names {
        match (committed.get(name), now.get(name)) {
            (Some(old), Some(new)) => {
                let headings: std::collections::BTreeSet<&String> =
                    old.keys().chain(new.keys()).collect();
                for heading in headings {
                    let (was, is) = (
                        old.get(heading).copied().unwrap_or(0),
                        new.get(heading).copied().unwrap_or(0),
                    );
                    if was != is {
                        out.push(format!("{name}: {heading} {was} -> {is}"));
                    }
                }
            }
            (Some(_), None) => out.push(format!("{name}: committed, no longer counted")),
            (None, _) => out.push(format!("{name}: counted, not committed")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::Path;

    #[test]
    fn driver_calls_per_move_match_the_committed_counts() {
        let rows = count_all().unwrap_or_else(|err| panic!("counting driver calls: {err}"));
        let text = expected_file(&rows);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPECTED_FILE);
        if std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1") {
            std::fs::write(&path, &text).unwrap();
            println!("wrote {}", path.display());
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let changed = differences(
            &parse_counts(&committed).unwrap_or_default(),
            &parse_counts(&text).unwrap(),
        );
        assert!(
            changed.is_empty(),
            "driver calls per move changed:\n  {}\nIf that is meant, run \
             `{UPDATE_ENV}=1 cargo test -p p2p-benches driver_calls` and commit {}.",
            changed.join("\n  "),
            path.display()
        );
        assert_eq!(
            committed,
            text,
            "{} is not what this build writes (same counts): regenerate it with {UPDATE_ENV}=1",
            path.display()
        );
    }

    #[test]
    fn a_changed_count_is_named_with_its_move_and_kind() {
        let table =
            "| move | call | Copy | total |\n|---|---|---:|---:|\n| peer | copy | 1 | 5 |\n";
        let more = "| move | call | Copy | Wait | total |\n|---|---|---:|---:|---:|\n\
                    | peer | copy | 1 | 2 | 7 |\n| via | copy | 2 | 0 | 9 |\n";
        let (old, new) = (parse_counts(table).unwrap(), parse_counts(more).unwrap());
        assert_eq!(
            differences(&old, &new),
            [
                "peer: Wait 0 -> 2",
                "peer: total 5 -> 7",
                "via: counted, not committed",
            ]
        );
        assert!(differences(&new, &new).is_empty());
        assert!(parse_counts("| move | a |\n|---|---|\n| x |\n").is_err());
    }
}
