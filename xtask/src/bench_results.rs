//! Benchmark result files (`benchmarks/results/*.tsv`): their format, reading and writing them, and the markdown tables they are made from and rendered to.
//!
//! One file per GPU run, one record per line, fields separated by tabs:
//!
//! ```text
//! # comment lines and blank lines are skipped
//! format   1
//! kind     nvidia-h200-x2            the machine kind: BENCHMARKS.md has one section per kind
//! card     NVIDIA H200
//! gpus     2
//! driver   580.159.04 (CUDA 13.0)
//! date     2026-11-27
//! commit   880903c                   the commit the binaries were built from
//! title    what the run was          optional
//! note     a markdown paragraph      repeatable; before the first table: about the run,
//!                                    after a table: about that table
//! table    a table's title
//! columns  case  size  machine  route  ours  baseline  baseline is  ratio  target  met
//! row      one cell per column
//! ```
//!
//! Comparison tables use the columns above: our
//! figure against a baseline measured in the same run, the ratio, the
//! target and whether it was met; `machine` says how the run used the GPUs
//! (`2 GPUs`, or `loopback (1 GPU as 2)` where one GPU was seen as two;
//! files from before it have no such column). Other tables (raw baselines,
//! matrices) have columns of their own. Cells never hold tabs or line breaks.

use std::fmt::Write as _;

use crate::util::{bail, Result};

/// The format this code reads and writes.
pub(crate) const FORMAT: &str = "1";

/// One table of a result file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) title: String,
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
    /// Paragraphs shown below the table.
    pub(crate) notes: Vec<String>,
}

impl Table {
    /// How many rows met their target and how many did not: rows of tables
    /// with `target` and `met` columns (a summary of other tables names
    /// its column otherwise, so nothing is counted twice).
    pub(crate) fn targets(&self) -> (usize, usize) {
        let column = |name: &str| self.columns.iter().position(|c| c == name);
        let (Some(_), Some(met)) = (column("target"), column("met")) else {
            return (0, 0);
        };
        let mut counts = (0, 0);
        for row in &self.rows {
            match row
                .get(met)
                .map(|c| c.trim_matches('*').to_ascii_lowercase())
            {
                Some(c) if c == "met" || c == "yes" => counts.0 += 1,
                Some(c) if c == "not met" || c == "no" => counts.1 += 1,
                _ => {}
            }
        }
        counts
    }

    /// The table as GitHub-flavoured markdown.
    pub(crate) fn markdown(&self) -> String {
        let escape = |cell: &String| cell.replace('|', "\\|");
        let line = |cells: &[String]| {
            format!(
                "| {} |\n",
                cells.iter().map(escape).collect::<Vec<_>>().join(" | ")
            )
        };
        let mut out = line(&self.columns);
        out += &format!("|{}|\n", vec!["---"; self.columns.len()].join("|"));
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

/// One GPU run's results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ResultFile {
    pub(crate) kind: String,
    pub(crate) card: String,
    pub(crate) gpus: String,
    pub(crate) driver: String,
    pub(crate) date: String,
    pub(crate) commit: String,
    pub(crate) title: Option<String>,
    /// Paragraphs about the whole run.
    pub(crate) notes: Vec<String>,
    pub(crate) tables: Vec<Table>,
}

fn clean(cell: &str) -> String {
    cell.replace(['\t', '\n', '\r'], " ").trim().to_string()
}

impl ResultFile {
    /// Reads the text of a result file; `name` is for error messages.
    pub(crate) fn parse(text: &str, name: &str) -> Result<ResultFile> {
        let mut file = ResultFile::default();
        let mut format = None;
        for (index, line) in text.lines().enumerate() {
            let at = || format!("{name}:{}", index + 1);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split('\t');
            let key = fields.next().unwrap_or("");
            let rest: Vec<String> = fields.map(str::to_string).collect();
            let value = || rest.join("\t");
            match key {
                "format" => format = Some(value()),
                "kind" => file.kind = value(),
                "card" => file.card = value(),
                "gpus" => file.gpus = value(),
                "driver" => file.driver = value(),
                "date" => file.date = value(),
                "commit" => file.commit = value(),
                "title" => file.title = Some(value()),
                "note" => match file.tables.last_mut() {
                    Some(table) => table.notes.push(value()),
                    None => file.notes.push(value()),
                },
                "table" => file.tables.push(Table {
                    title: value(),
                    ..Table::default()
                }),
                "columns" | "row" => {
                    let Some(table) = file.tables.last_mut() else {
                        bail!("{}: `{key}` before any `table` line", at());
                    };
                    if key == "columns" {
                        table.columns = rest;
                    } else if rest.len() != table.columns.len() {
                        bail!(
                            "{}: a row of {} cells in table `{}` of {} columns",
                            at(),
                            rest.len(),
                            table.title,
                            table.columns.len()
                        );
                    } else {
                        table.rows.push(rest);
                    }
                }
                other => bail!("{}: unknown record `{other}`", at()),
            }
        }
        match format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => bail!("{name}: format {other}, but this xtask reads format {FORMAT}"),
            None => bail!("{name}: no `format` line"),
        }
        for (field, value) in [
            ("kind", &file.kind),
            ("card", &file.card),
            ("date", &file.date),
            ("commit", &file.commit),
        ] {
            if value.is_empty() {
                bail!("{name}: no `{field}` line");
            }
        }
        Ok(file)
    }

    /// The text of the result file.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::from(
            "# p2p-move benchmark result, one GPU run (format: xtask/src/bench_results.rs).\n\
             # BENCHMARKS.md is generated from these files: cargo xtask bench --report\n",
        );
        let mut record = |key: &str, fields: &[String]| {
            let cells: Vec<String> = fields.iter().map(|f| clean(f)).collect();
            let _ = writeln!(out, "{key}\t{}", cells.join("\t"));
        };
        record("format", &[FORMAT.to_string()]);
        for (key, value) in [
            ("kind", &self.kind),
            ("card", &self.card),
            ("gpus", &self.gpus),
            ("driver", &self.driver),
            ("date", &self.date),
            ("commit", &self.commit),
        ] {
            record(key, std::slice::from_ref(value));
        }
        if let Some(title) = &self.title {
            record("title", std::slice::from_ref(title));
        }
        for note in &self.notes {
            record("note", std::slice::from_ref(note));
        }
        for table in &self.tables {
            record("table", std::slice::from_ref(&table.title));
            record("columns", &table.columns);
            for row in &table.rows {
                record("row", row);
            }
            for note in &table.notes {
                record("note", std::slice::from_ref(note));
            }
        }
        out
    }

    /// The file name a run gets: `DATE-KIND-COMMIT.tsv`.
    pub(crate) fn file_name(&self) -> String {
        let safe = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        };
        format!(
            "{}-{}-{}.tsv",
            safe(&self.date),
            safe(&self.kind),
            safe(&self.commit)
        )
    }
}

/// Splits a markdown table line into its cells (`\|` is a `|` inside a cell).
fn markdown_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                if let Some(cell) = cells.last_mut() {
                    cell.push('|');
                }
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(c);
                }
            }
        }
    }
    cells.iter().map(|c| clean(c)).collect()
}

/// The tables of a markdown document (as the GPU benchmarks write them):
/// each titled by the heading above it (`prefix` first), with the text
/// lines that follow it as notes. Text before the first table is dropped.
pub(crate) fn tables_from_markdown(markdown: &str, prefix: &str) -> Vec<Table> {
    let mut tables: Vec<Table> = Vec::new();
    let mut heading = String::new();
    let mut in_table = false;
    let mut in_code = false;
    for line in markdown.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_code = !in_code;
            in_table = false;
            continue;
        }
        if in_code {
            continue;
        }
        if trimmed.starts_with('|') {
            let cells = markdown_cells(trimmed);
            let separator = cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
            if separator {
                continue;
            }
            if in_table {
                if let Some(table) = tables.last_mut() {
                    let mut row = cells;
                    row.resize(table.columns.len(), String::new());
                    table.rows.push(row);
                }
            } else {
                let title = if heading.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{prefix}: {heading}")
                };
                tables.push(Table {
                    title,
                    columns: cells,
                    ..Table::default()
                });
                in_table = true;
            }
            continue;
        }
        in_table = false;
        if let Some(title) = trimmed.strip_prefix('#') {
            heading = title.trim_start_matches('#').trim().to_string();
        } else if !trimmed.is_empty() {
            if let Some(table) = tables.last_mut() {
                table.notes.push(clean(trimmed));
            }
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns of a comparison table, as gpu-bench writes them.
    const COMPARISON_COLUMNS: [&str; 10] = [
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

    fn sample() -> ResultFile {
        ResultFile {
            kind: "nvidia-h200-x2".into(),
            card: "NVIDIA H200".into(),
            gpus: "2".into(),
            driver: "580.159.04 (CUDA 13.0)".into(),
            date: "2026-11-27".into(),
            commit: "880903c".into(),
            title: Some("final run".into()),
            notes: vec!["about the run".into()],
            tables: vec![Table {
                title: "routes".into(),
                columns: COMPARISON_COLUMNS.iter().map(|c| c.to_string()).collect(),
                rows: vec![
                    [
                        "peer",
                        "4 KiB",
                        "2 GPUs",
                        "peer",
                        "7.7 µs",
                        "7.0 µs",
                        "raw",
                        "0.92",
                        "time ≤ 1.3× raw",
                        "met",
                    ]
                    .map(String::from)
                    .to_vec(),
                    [
                        "staged",
                        "64 MiB",
                        "loopback (1 GPU as 2)",
                        "staged",
                        "46 GB/s",
                        "54 GB/s",
                        "raw",
                        "0.85",
                        "≥ 0.9×",
                        "NOT MET",
                    ]
                    .map(String::from)
                    .to_vec(),
                ],
                notes: vec!["about | the table".into()],
            }],
        }
    }

    #[test]
    fn result_files_read_back_what_was_written() {
        let file = sample();
        let text = file.to_text();
        assert_eq!(ResultFile::parse(&text, "x.tsv").unwrap(), file);
        assert_eq!(file.file_name(), "2026-11-27-nvidia-h200-x2-880903c.tsv");
        assert_eq!(file.tables[0].targets(), (1, 1));
    }

    #[test]
    fn bad_result_files_say_where() {
        let text = sample().to_text();
        let short_row = text.replace("\t0.92\t", "\t");
        let err = ResultFile::parse(&short_row, "x.tsv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.tsv:") && err.contains("cells"), "{err}");
        let no_commit: String = text
            .lines()
            .filter(|l| !l.starts_with("commit"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(ResultFile::parse(&no_commit, "x.tsv")
            .unwrap_err()
            .to_string()
            .contains("commit"));
        assert!(ResultFile::parse(&text.replace("format\t1", "format\t9"), "x.tsv").is_err());
        assert!(ResultFile::parse(&format!("{text}bogus\tx\n"), "x.tsv").is_err());
    }

    #[test]
    fn markdown_tables_become_tables_with_their_headings_and_notes() {
        let markdown = "# GPU benchmark\n\n```\n| not | a table |\n```\n\n## Results\n\n\
                        | route | size |\n|---|---|\n| peer \\| pool | 4 KiB |\n| via | 1 MiB |\n\
                        \nsome note\n\n### Raw\n\n| a |\n|---:|\n| 1 |\n";
        let tables = tables_from_markdown(markdown, "gpu-bench");
        assert_eq!(tables.len(), 2, "{tables:?}");
        assert_eq!(tables[0].title, "gpu-bench: Results");
        assert_eq!(tables[0].columns, vec!["route", "size"]);
        assert_eq!(tables[0].rows[0], vec!["peer | pool", "4 KiB"]);
        assert_eq!(tables[0].notes, vec!["some note"]);
        assert_eq!(tables[1].title, "gpu-bench: Raw");
        assert_eq!(tables[1].rows, vec![vec!["1".to_string()]]);
        assert!(tables[0].markdown().contains("| peer \\| pool | 4 KiB |"));
    }
}
