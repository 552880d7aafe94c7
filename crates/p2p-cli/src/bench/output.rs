//! What `p2p bench` prints: aligned matrices for people, one JSON document for programs.

use p2p_move::format_size;
use serde_json::{json, Value};

use super::cases::{CaseResult, Cell, Status};
use super::BenchOptions;
use crate::machine::Machine;
use crate::report::driver_version;

/// A cell's text: the median (with `[min-max]` when verbose), `n/a`, `WRONG`, `FAILED` or `-`.
fn cell_text(cell: &Cell, verbose: bool) -> String {
    match cell {
        Cell::Unmeasured => "-".into(),
        Cell::NotAvailable(_) => "n/a".into(),
        Cell::Measured {
            median, min, max, ..
        } if verbose => format!("{median:.2} [{min:.2}-{max:.2}]"),
        Cell::Measured { median, .. } => format!("{median:.2}"),
        Cell::Wrong(_) => "WRONG".into(),
        Cell::Failed(_) => "FAILED".into(),
    }
}

/// The matrix of one case, padded into columns.
pub(super) fn matrix_text(result: &CaseResult, verbose: bool) -> String {
    let corner = "from \\ to".to_string();
    let mut grid: Vec<Vec<String>> = vec![std::iter::once(corner)
        .chain(result.columns.iter().cloned())
        .collect()];
    for (label, cells) in result.rows.iter().zip(&result.cells) {
        grid.push(
            std::iter::once(label.clone())
                .chain(cells.iter().map(|c| cell_text(c, verbose)))
                .collect(),
        );
    }
    let columns = grid[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            grid.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &grid {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (text, &width))| {
                if i == 0 {
                    format!("{text:<width$}")
                } else {
                    format!("{text:>width$}")
                }
            })
            .collect();
        out.push_str("  ");
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Sum, min and max of the measured medians.
fn summary(figures: &[f64]) -> Option<(f64, f64, f64)> {
    if figures.is_empty() {
        return None;
    }
    let sum = figures.iter().sum();
    let min = figures.iter().copied().fold(f64::INFINITY, f64::min);
    let max = figures.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((sum, min, max))
}

/// Every case as text, then a line saying whether any copy was wrong.
pub(super) fn print_text(options: &BenchOptions, results: &[CaseResult]) {
    for result in results {
        let case = result.case;
        let unit = if case.latency { "µs per copy" } else { "GB/s" };
        println!(
            "\n{}: {} ({}, {unit}, median of {}{})",
            case.name,
            case.what,
            format_size(result.bytes),
            options.iterations,
            if options.verbose { " [min-max]" } else { "" }
        );
        if let Some(reason) = &result.waived {
            println!("  waived: {reason}");
        }
        for error in &result.errors {
            println!("  ERROR: {error}");
        }
        if result.waived.is_some()
            && result.figures().is_empty()
            && result
                .cells
                .iter()
                .flatten()
                .all(|c| *c == Cell::Unmeasured)
        {
            continue;
        }
        print!("{}", matrix_text(result, options.verbose));
        for (row, cells) in result.rows.iter().zip(&result.cells) {
            for (column, cell) in result.columns.iter().zip(cells) {
                match cell {
                    Cell::NotAvailable(why) => println!("  n/a {row} -> {column}: {why}"),
                    Cell::Failed(why) => println!("  FAILED {row} -> {column}: {why}"),
                    Cell::Wrong(lines) => {
                        for line in lines {
                            println!("  !!! WRONG BYTES {row} -> {column}: {line}");
                        }
                    }
                    Cell::Measured {
                        route: Some(route), ..
                    } => println!("  route {row} -> {column}: {route}"),
                    _ => {}
                }
            }
        }
        if let Some((sum, min, max)) = summary(&result.figures()) {
            println!("  sum {sum:.2}  min {min:.2}  max {max:.2}");
        }
    }
    let wrong: usize = results.iter().map(|r| r.mismatches.len()).sum();
    let errors = results
        .iter()
        .filter(|r| r.status() == Status::Error)
        .count();
    if wrong > 0 || errors > 0 {
        println!(
            "\n!!! {wrong} copy(ies) delivered WRONG BYTES; {errors} case(s) with errors. Exit status 1."
        );
    } else {
        println!("\nEvery measured copy delivered the exact source bytes.");
    }
}

/// A matrix of numbers, `null` where not measured.
fn numbers(result: &CaseResult, pick: impl Fn(&Cell) -> Option<f64>) -> Value {
    Value::Array(
        result
            .cells
            .iter()
            .map(|row| Value::Array(row.iter().map(|c| json!(pick(c))).collect()))
            .collect(),
    )
}

fn case_json(result: &CaseResult, options: &BenchOptions) -> Value {
    let mut not_measured = Vec::new();
    let mut failures = Vec::new();
    for (row, cells) in result.rows.iter().zip(&result.cells) {
        for (column, cell) in result.columns.iter().zip(cells) {
            match cell {
                Cell::NotAvailable(why) => {
                    not_measured.push(json!({"row": row, "column": column, "reason": why}))
                }
                Cell::Failed(why) => {
                    failures.push(json!({"row": row, "column": column, "error": why}))
                }
                Cell::Wrong(lines) => failures.push(
                    json!({"row": row, "column": column, "error": "wrong bytes", "mismatches": lines}),
                ),
                _ => {}
            }
        }
    }
    let status = result.status();
    let reason = match status {
        Status::Waived => result.waived.clone(),
        Status::Error => Some(
            result
                .errors
                .iter()
                .cloned()
                .chain(failures.iter().map(|f| {
                    format!(
                        "{} -> {}: {}",
                        f["row"].as_str().unwrap_or(""),
                        f["column"].as_str().unwrap_or(""),
                        f["error"].as_str().unwrap_or("")
                    )
                }))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Status::Passed => None,
    };
    let (sum, min, max) = match summary(&result.figures()) {
        Some((s, lo, hi)) => (json!(s), json!(lo), json!(hi)),
        None => (Value::Null, Value::Null, Value::Null),
    };
    let mut doc = json!({
        "name": result.case.name,
        "description": result.case.what,
        "status": status.name(),
        "reason": reason,
        "unit": result.case.unit(),
        "bytes": result.bytes,
        "iterations": options.iterations,
        "rows": result.rows,
        "columns": result.columns,
        "matrix": numbers(result, |c| match c {
            Cell::Measured { median, .. } => Some(*median),
            _ => None,
        }),
        "sum": sum,
        "min": min,
        "max": max,
        "not_measured": not_measured,
        "failures": failures,
        "mismatches": result.mismatches,
    });
    if options.verbose {
        doc["matrix_min"] = numbers(result, |c| match c {
            Cell::Measured { min, .. } => Some(*min),
            _ => None,
        });
        doc["matrix_max"] = numbers(result, |c| match c {
            Cell::Measured { max, .. } => Some(*max),
            _ => None,
        });
    }
    let routes: Vec<Value> = result
        .cells
        .iter()
        .map(|row| {
            Value::Array(
                row.iter()
                    .map(|c| match c {
                        Cell::Measured {
                            route: Some(route), ..
                        } => json!(route),
                        _ => Value::Null,
                    })
                    .collect(),
            )
        })
        .collect();
    if result
        .cells
        .iter()
        .flatten()
        .any(|c| matches!(c, Cell::Measured { route: Some(_), .. }))
    {
        doc["routes"] = Value::Array(routes);
    }
    doc
}

/// The whole run as one JSON document.
pub(super) fn document(machine: &Machine, options: &BenchOptions, results: &[CaseResult]) -> Value {
    let driver = machine.driver();
    let devices: Vec<Value> = driver
        .devices()
        .iter()
        .map(|d| json!({"ordinal": d.ordinal, "name": d.name, "uuid": d.uuid, "pci_bus_id": d.pci_bus_id}))
        .collect();
    let simulated = machine.simulated();
    json!({
        "tool": "p2p bench",
        "version": env!("CARGO_PKG_VERSION"),
        "simulated": simulated,
        "machine": machine.name,
        "notice": machine.notice,
        "driver_version": driver_version(driver.driver_version()),
        "driver_version_code": driver.driver_version(),
        "devices": devices,
        "timing": if simulated {
            "timing events on the simulator's virtual clock (the topology's speeds)"
        } else {
            "CUDA timing events, after one warm-up copy per cell"
        },
        "iterations": options.iterations,
        "cases": results.iter().map(|r| case_json(r, options)).collect::<Vec<_>>(),
        "mismatches": results.iter().map(|r| r.mismatches.len()).sum::<usize>(),
        "passed": results.iter().all(|r| r.status() != Status::Error),
    })
}

/// Every case as a markdown table (for benchmark result files), with its n/a reasons and failures below it.
pub(super) fn markdown(
    machine: &Machine,
    options: &BenchOptions,
    results: &[CaseResult],
) -> String {
    let mut out = format!(
        "# p2p bench: {} (CUDA driver {})\n",
        machine.name,
        driver_version(machine.driver().driver_version())
    );
    for result in results {
        let case = result.case;
        let unit = if case.latency { "µs per copy" } else { "GB/s" };
        out += &format!(
            "\n## {}: {}, {}, {unit}, median of {}; {}\n\n",
            case.name,
            case.what,
            format_size(result.bytes),
            options.iterations,
            result.status().name()
        );
        let header: Vec<String> = std::iter::once("from \\ to".to_string())
            .chain(result.columns.iter().cloned())
            .collect();
        out += &format!(
            "| {} |\n|{}|\n",
            header.join(" | "),
            vec!["---"; header.len()].join("|")
        );
        for (label, cells) in result.rows.iter().zip(&result.cells) {
            let cells: Vec<String> = cells
                .iter()
                .map(|c| cell_text(c, options.verbose))
                .collect();
            out += &format!("| {label} | {} |\n", cells.join(" | "));
        }
        let mut notes = Vec::new();
        if let Some(reason) = &result.waived {
            notes.push(format!("waived: {reason}"));
        }
        notes.extend(result.errors.iter().map(|e| format!("ERROR: {e}")));
        for (row, cells) in result.rows.iter().zip(&result.cells) {
            for (column, cell) in result.columns.iter().zip(cells) {
                match cell {
                    Cell::NotAvailable(why) => notes.push(format!("n/a {row} -> {column}: {why}")),
                    Cell::Failed(why) => notes.push(format!("FAILED {row} -> {column}: {why}")),
                    Cell::Wrong(lines) => notes.extend(
                        lines
                            .iter()
                            .map(|l| format!("WRONG BYTES {row} -> {column}: {l}")),
                    ),
                    Cell::Measured {
                        route: Some(route), ..
                    } => notes.push(format!("route {row} -> {column}: {route}")),
                    _ => {}
                }
            }
        }
        if let Some((sum, min, max)) = summary(&result.figures()) {
            notes.push(format!("sum {sum:.2}, min {min:.2}, max {max:.2}"));
        }
        if !notes.is_empty() {
            out += "\n";
            out += &notes.join(". ");
            out += "\n";
        }
    }
    out
}
