#!/usr/bin/env bash
# Runs the GPU benchmarks of p2p-move and writes one result file. Written by
# `cargo xtask bench --bundle DIR` from xtask/src/bench_run.sh; edit that file,
# not the copy in a bundle.
#
# Run from the repository root:   DIR/run
# Results go to $OUT if set, else target/bench-results:
#   run-info.tsv        the machine kind, card, GPU count, driver, date, commit
#   machine.txt         nvidia-smi -L, nvidia-smi topo -m, `p2p probe`
#   probe.json          `p2p probe --json`
#   bench-p2p.json      `p2p bench --json` (every case); bench-p2p.md the same as tables
#   bench-gpu.md, bench-tch.md   gpu-bench's and tch-bench's tables
#   bench.log           every benchmark's output
#   DATE-KIND-COMMIT.tsv  the result file (and DATE-KIND-COMMIT.p2p-bench.json, the
#                       matrices as data): commit both under benchmarks/results/,
#                       then `cargo xtask bench --report` regenerates BENCHMARKS.md
# Knobs: P2P_BENCH_ARGS adds arguments to `p2p bench` (e.g. "--iterations 10").
# On a one-GPU machine gpu-bench runs in loopback mode (the GPU seen as two:
# the routes through host memory run for real, rows that need a second GPU are
# skipped); a benchmark that exits 2 cannot run on this machine at all (tch-bench
# needs two GPUs): it is skipped, not failed, and the result file says so.
# Exits non-zero if anything failed (a wrong byte anywhere fails the run).
set -uo pipefail # no -e: a failure is recorded and the next benchmark still runs

# Filled in by xtask.
BENCHES=()
COMMIT=unknown

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$BUNDLE/bin"

if torch_lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)" &&
    [[ -d "$torch_lib" ]]; then
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

RESULTS="${OUT:-target/bench-results}"
mkdir -p "$RESULTS"
# Files left by an earlier run would read as this run's.
rm -f "$RESULTS"/{run-info.tsv,machine.txt,probe.json,bench-p2p.json,bench-p2p.md,bench-gpu.md,bench-tch.md,bench.log}
: >"$RESULTS/bench.log"
failed=0

card="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')"
# `NVIDIA H200` on 2 GPUs is the kind `nvidia-h200-x2`.
kind="$(tr 'A-Z' 'a-z' <<<"${card:-unknown}" | sed 's/[^a-z0-9][^a-z0-9]*/-/g; s/^-//; s/-$//')-x${gpus}"
{
    printf 'kind\t%s\n' "$kind"
    printf 'card\t%s\n' "${card:-unknown}"
    printf 'gpus\t%s\n' "$gpus"
    printf 'driver\t%s\n' "${driver:-unknown}"
    printf 'date\t%s\n' "$(date -u +%Y-%m-%d)"
    printf 'commit\t%s\n' "$COMMIT"
} >"$RESULTS/run-info.tsv"

{
    echo "# nvidia-smi -L"
    nvidia-smi -L
    echo
    echo "# nvidia-smi topo -m"
    nvidia-smi topo -m
    echo
    echo "# p2p probe --require-gpu"
} 2>&1 | tee "$RESULTS/machine.txt"
if ! "$BIN/p2p" probe --require-gpu 2>&1 | tee -a "$RESULTS/machine.txt"; then
    echo "p2p probe --require-gpu failed: no benchmark run."
    exit 1
fi
"$BIN/p2p" probe --json --require-gpu >"$RESULTS/probe.json" 2>>"$RESULTS/machine.txt" || failed=1

if ((gpus == 1)); then
    printf 'note\t%s\n' "One GPU: gpu-bench ran in loopback mode (loopback: one GPU seen as two); its rows say so in their machine column." >>"$RESULTS/run-info.tsv"
fi

# run NAME COMMAND...: the command's output goes to bench.log; a failure shows
# its tail; exit status 2 (cannot run on this machine) is a skip, noted in run-info.tsv.
run() {
    local name=$1 start rc first_line why
    shift
    start=$(date +%s)
    printf '\n===== %s: %s\n' "$name" "$*" >>"$RESULTS/bench.log"
    first_line=$(($(wc -l <"$RESULTS/bench.log") + 1))
    if "$@" >>"$RESULTS/bench.log" 2>&1; then
        printf 'ok    %s  (%ss)\n' "$name" "$(($(date +%s) - start))"
    else
        rc=$?
        if ((rc == 2)); then
            why="$(tail -n +"$first_line" "$RESULTS/bench.log" | grep -v '^[[:space:]]*$' | tail -n 1 | tr '\t' ' ')"
            printf 'skip  %s  (cannot run on this machine: %s)\n' "$name" "$why"
            printf 'note\t%s did not run on this machine (exit 2): %s\n' "$name" "$why" >>"$RESULTS/run-info.tsv"
            return
        fi
        failed=1
        printf 'FAIL  %s  (exit %s, %ss)\n' "$name" "$rc" "$(($(date +%s) - start))"
        tail -n 40 "$RESULTS/bench.log" | sed 's/^/    | /'
    fi
}

read -r -a bench_args <<<"${P2P_BENCH_ARGS:-}"
start=$(date +%s)
# --require-gpu: without it, p2p falls back to a simulated machine and would measure nothing real.
if "$BIN/p2p" bench --require-gpu --json --markdown "$RESULTS/bench-p2p.md" "${bench_args[@]}" \
    >"$RESULTS/bench-p2p.json" 2>>"$RESULTS/bench.log"; then
    printf 'ok    p2p bench  (%ss)\n' "$(($(date +%s) - start))"
else
    failed=1
    printf 'FAIL  p2p bench (wrong bytes or errors: see %s/bench-p2p.md)\n' "$RESULTS"
fi

# Benchmarks write their markdown tables (bench-gpu.md, bench-tch.md) to $OUT.
export OUT="$RESULTS"
for bench in "${BENCHES[@]}"; do
    run "$bench" "$BIN/$bench"
done

if result="$("$BIN/xtask" bench --collect "$RESULTS")"; then
    echo "$result"
else
    failed=1
    echo "FAIL  writing the result file"
fi
if ((failed)); then
    echo "bench: FAILED (logs in $RESULTS)"
    exit 1
fi
echo "bench: all ran (logs in $RESULTS)"
