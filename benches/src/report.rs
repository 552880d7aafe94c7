//! The results table: one row per (route, size), our time against a
//! baseline's, with the target and whether it was met; printed for
//! people and written as markdown for `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::timing::gbps;

/// Copies up to this size are latency-bound: shown as times, not GB/s.
pub const SHOW_TIME_UP_TO: usize = 64 << 10;

/// How a row's figures are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    /// Microseconds per operation.
    Time,
    /// Decimal GB/s.
    Bandwidth,
}

impl Show {
    /// Times for small copies, GB/s for the rest.
    pub fn for_size(bytes: usize) -> Show {
        if bytes <= SHOW_TIME_UP_TO {
            Show::Time
        } else {
            Show::Bandwidth
        }
    }
}

/// What a row must reach, as a least ratio of our speed to the baseline's.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `baseline time / our time` must be at least this.
    pub min_speed_ratio: f64,
    /// The target as the issue words it.
    pub text: String,
}

impl Target {
    /// Our speed at least `ratio` times the baseline's.
    pub fn speed(ratio: f64, of_what: &str) -> Target {
        Target {
            min_speed_ratio: ratio,
            text: format!("≥ {ratio}× {of_what}"),
        }
    }

    /// Our time at most `factor` times the baseline's.
    pub fn time_within(factor: f64, of_what: &str) -> Target {
        Target {
            min_speed_ratio: 1.0 / factor,
            text: format!("time ≤ {factor}× {of_what}"),
        }
    }
}

/// How a row came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Met,
    NotMet,
    /// No target for this row: the figures are for information.
    Info,
    /// The route's correctness check failed: its speed means nothing.
    Failed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Met => "met",
            Outcome::NotMet => "NOT MET",
            Outcome::Info => "—",
            Outcome::Failed => "FAILED (wrong bytes)",
        }
    }
}

/// One comparison: our operation against a baseline, on the same bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Our route and memory, e.g. `peer (cuMemAlloc)`.
    pub route: String,
    /// The size, e.g. `16 MiB` or `256 × 16 KiB`.
    pub size: String,
    /// Bytes moved per operation (for GB/s).
    pub bytes: usize,
    /// Median of our operation.
    pub ours: Duration,
    /// Median of the baseline.
    pub baseline: Duration,
    /// What the baseline is, e.g. `raw cuMemcpyPeerAsync`.
    pub baseline_name: String,
    pub show: Show,
    pub target: Option<Target>,
    /// Whether our route delivered the right bytes in its correctness check.
    pub correct: bool,
}

impl Row {
    /// Our speed over the baseline's: above 1 means we are faster.
    pub fn ratio(&self) -> f64 {
        let ours = self.ours.as_secs_f64();
        if ours > 0.0 {
            self.baseline.as_secs_f64() / ours
        } else {
            f64::INFINITY
        }
    }

    pub fn outcome(&self) -> Outcome {
        match (&self.target, self.correct) {
            (_, false) => Outcome::Failed,
            (None, true) => Outcome::Info,
            (Some(target), true) if self.ratio() >= target.min_speed_ratio => Outcome::Met,
            (Some(_), true) => Outcome::NotMet,
        }
    }

    /// The route the row measures, from its label: `peer`, `staged`,
    /// `host-to-device`, `via cuda:2`, `same device` (a copy between two
    /// buffers of one GPU); batches and non-blocking rows are peer copies
    /// unless their label says `peer broken` or `same device`.
    pub fn route_name(&self) -> String {
        let label = self.route.as_str();
        if label.contains("same device") {
            "same device".into()
        } else if label.contains("peer broken") {
            "staged".into()
        } else if label.starts_with("via ") {
            label.split(" (").next().unwrap_or(label).to_string()
        } else if label.starts_with("peer")
            || label.starts_with("batch")
            || label.starts_with("non-blocking")
        {
            "peer".into()
        } else if label.starts_with("staged") {
            "staged".into()
        } else if label.starts_with("host to device") {
            "host-to-device".into()
        } else if label.starts_with("device to host") {
            "device-to-host".into()
        } else {
            label.to_string()
        }
    }

    fn cells(&self, machine: &str) -> Vec<String> {
        vec![
            self.route.clone(),
            self.size.clone(),
            machine.to_string(),
            self.route_name(),
            figure(self.show, self.bytes, self.ours),
            figure(self.show, self.bytes, self.baseline),
            self.baseline_name.clone(),
            format!("{:.2}", self.ratio()),
            self.target
                .as_ref()
                .map_or_else(|| "—".to_string(), |t| t.text.clone()),
            self.outcome().label().to_string(),
        ]
    }
}

/// A time (`12.3 µs`, `4.56 ms`) or a bandwidth (`315.2 GB/s`).
pub fn figure(show: Show, bytes: usize, time: Duration) -> String {
    match show {
        Show::Time => format_time(time),
        Show::Bandwidth => format!("{:.1} GB/s", gbps(bytes, time)),
    }
}

/// `12.3 µs` below 10 ms, `12.34 ms` from there.
pub fn format_time(time: Duration) -> String {
    let micros = time.as_secs_f64() * 1e6;
    if micros < 10_000.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
}

/// Column headers of the results table: the comparison columns of a
/// benchmark result file (`case` is the row's label, `machine` the mode the
/// run was in, `met` its outcome).
pub const ROW_HEADERS: [&str; 10] = [
    "case",
    "size",
    "machine",
    "route",
    "ours",
    "baseline",
    "baseline is",
    "ratio",
    "target",
    "met",
];

/// A table of text cells, rendered padded for a terminal or as markdown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// The results table of `rows`, measured on `machine` (`2 GPUs`,
    /// `loopback (1 GPU as 2)`), which every row states.
    pub fn of_rows(rows: &[Row], machine: &str) -> Table {
        let mut table = Table::new(&ROW_HEADERS);
        table.rows = rows.iter().map(|row| row.cells(machine)).collect();
        table
    }

    pub fn push(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Columns padded to their widest cell, two spaces apart.
    pub fn to_text(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, &width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
                .collect();
            let _ = writeln!(out, "{}", padded.join("  ").trim_end());
        };
        line(&mut out, &self.headers);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&mut out, &rule);
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }

    /// A GitHub-flavoured markdown table.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let escape = |cell: &String| cell.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} |",
            self.headers
                .iter()
                .map(escape)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|{}|", vec!["---"; self.headers.len()].join("|"));
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} |",
                row.iter().map(escape).collect::<Vec<_>>().join(" | ")
            );
        }
        out
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }
}

/// One correctness check: a copy by one of our routes, read back and compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The route, as in the results table.
    pub route: String,
    pub bytes: usize,
    /// What was wrong; `None` when every byte was right.
    pub problem: Option<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.problem.is_none()
    }

    /// `ok      peer (cuMemAlloc), 1073737731 bytes` or `FAILED  ...: why`.
    pub fn line(&self) -> String {
        match &self.problem {
            None => format!("ok      {}, {} bytes", self.route, self.bytes),
            Some(problem) => format!("FAILED  {}, {} bytes: {problem}", self.route, self.bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ours_us: u64, baseline_us: u64, target: Option<Target>) -> Row {
        Row {
            route: "peer".into(),
            size: "4 KiB".into(),
            bytes: 4096,
            ours: Duration::from_micros(ours_us),
            baseline: Duration::from_micros(baseline_us),
            baseline_name: "raw".into(),
            show: Show::for_size(4096),
            target,
            correct: true,
        }
    }

    #[test]
    fn outcomes_follow_targets_and_checks() {
        assert_eq!(row(10, 10, None).outcome(), Outcome::Info);
        assert_eq!(
            row(13, 10, Some(Target::time_within(1.3, "raw"))).outcome(),
            Outcome::Met
        );
        assert_eq!(
            row(14, 10, Some(Target::time_within(1.3, "raw"))).outcome(),
            Outcome::NotMet
        );
        assert_eq!(
            row(10, 97, Some(Target::speed(10.0, "separate"))).outcome(),
            Outcome::NotMet
        );
        assert_eq!(
            row(10, 100, Some(Target::speed(10.0, "separate"))).outcome(),
            Outcome::Met
        );
        let wrong = Row {
            correct: false,
            ..row(1, 100, None)
        };
        assert_eq!(wrong.outcome(), Outcome::Failed);
    }

    #[test]
    fn route_names_come_from_row_labels() {
        let named = |label: &str| {
            Row {
                route: label.into(),
                ..row(1, 1, None)
            }
            .route_name()
        };
        assert_eq!(named("peer (cuMemAlloc)"), "peer");
        assert_eq!(named("batch: copy_batch of 256"), "peer");
        assert_eq!(named("staged (pinned pipeline)"), "staged");
        assert_eq!(named("host to device (pageable Vec)"), "host-to-device");
        assert_eq!(named("via cuda:2"), "via cuda:2");
        assert_eq!(named("via cuda:2 (scratch)"), "via cuda:2");
        assert_eq!(named("batch, peer broken: copy_batch of 256"), "staged");
        assert_eq!(
            named("batch, same device cuda:0: copy_batch"),
            "same device"
        );
        assert_eq!(
            named("non-blocking 4 KiB, peer cuda:0 -> cuda:1: copy_async"),
            "peer"
        );
        assert_eq!(
            named("non-blocking 4 KiB, same device cuda:0: copy_async"),
            "same device"
        );
    }

    #[test]
    fn figures_pick_their_unit() {
        assert_eq!(
            figure(Show::Time, 4096, Duration::from_nanos(9_650)),
            "9.7 µs"
        );
        assert_eq!(
            figure(Show::Time, 4096, Duration::from_micros(26_000)),
            "26.00 ms"
        );
        assert_eq!(
            figure(Show::Bandwidth, 1_000_000_000, Duration::from_millis(4)),
            "250.0 GB/s"
        );
    }

    #[test]
    fn tables_render_for_terminals_and_markdown() {
        let table = Table::of_rows(
            &[row(10, 9, Some(Target::time_within(1.3, "raw")))],
            "2 GPUs",
        );
        let text = table.to_text();
        assert!(text.lines().count() == 3 && text.contains("met"), "{text}");
        let markdown = table.to_markdown();
        assert!(
            markdown.starts_with("| case | size | machine | route |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| peer | 4 KiB | 2 GPUs | peer | 10.0 µs | 9.0 µs | raw | 0.90 |"),
            "{markdown}"
        );
    }
}
