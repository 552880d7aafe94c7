#!/usr/bin/env bash
# Runs the GPU tests of p2p-move on a GPU machine. Written by `cargo xtask gpu-test`
# from xtask/src/gpu_run.sh; edit that file, not the copy in a bundle.
#
# Run from the repository root:   target/gpu-bundle/run
# Results go to $OUT if set, else target/gpu-results (never more than 8 files):
#   machine.txt   nvidia-smi -L, nvidia-smi topo -m, `p2p probe`
#   probe.json    `p2p probe --json`
#   tests.log     every test binary's output, one after another
#   bench.log     every gpu-* and *-bench binary's output, and the examples'
#   bench-gpu.md  gpu-bench's table; bench-tch.md  tch-bench's table
#   verify.json   `p2p verify --moves 300 --json --require-gpu`, when the CLI has `verify`
#   summary.txt   the table printed last
# Knobs: TEST_ARGS adds arguments for every test binary (e.g. TEST_ARGS=--include-ignored);
# KEEP_GOING=1 runs the tests even when `p2p probe --require-gpu` fails.
# A benchmark that exits 2 cannot run on this machine (tch-bench on one GPU; gpu-bench
# runs there in loopback mode): it is listed as `skip`, not failed.
# Exits non-zero if anything failed.
set -uo pipefail # no -e: a failure is recorded and the next binary still runs

# The binaries in bin/, filled in by xtask.
TESTS=()
BENCHES=()

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$BUNDLE/bin"

# tch-linked binaries need this machine's libtorch; without torch there is nothing to add.
if torch_lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)" &&
    [[ -d "$torch_lib" ]]; then
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

RESULTS="${OUT:-target/gpu-results}"
mkdir -p "$RESULTS"
# Files left by an earlier run would read as this run's.
rm -f "$RESULTS"/{machine.txt,probe.json,tests.log,bench.log,verify.json,summary.txt,bench-gpu.md,bench-tch.md}
: >"$RESULTS/tests.log"
: >"$RESULTS/bench.log"

names=()
statuses=()
seconds=()
failed=0

now() { date +%s.%N; }

# record NAME STATUS START_TIME
record() {
    names+=("$1")
    statuses+=("$2")
    seconds+=("$(awk -v a="$3" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')")
    [[ "$2" == ok || "$2" == skip ]] || failed=1
    printf '%-4s  %s  (%ss)\n' "$2" "$1" "${seconds[-1]}"
}

# run_logged [--skip-on-2] NAME LOG COMMAND...: appends the command's output to
# LOG; on failure shows its tail. With --skip-on-2, exit status 2 (a benchmark
# that cannot run on this machine, e.g. tch-bench on one GPU) is a skip, not a failure.
run_logged() {
    local skip_on_2=0 name log start first_line rc
    if [[ "$1" == --skip-on-2 ]]; then
        skip_on_2=1
        shift
    fi
    name=$1 log=$2
    shift 2
    start=$(now)
    printf '\n===== %s: %s\n' "$name" "$*" >>"$log"
    first_line=$(wc -l <"$log")
    if "$@" >>"$log" 2>&1; then
        record "$name" ok "$start"
    else
        rc=$?
        printf '===== %s: exit status %s\n' "$name" "$rc" >>"$log"
        if ((skip_on_2 && rc == 2)); then
            record "$name" skip "$start"
            tail -n +"$first_line" "$log" | grep -v '^=====' | tail -n 1 | sed 's/^/    | /'
            return
        fi
        record "$name" FAIL "$start"
        tail -n +"$first_line" "$log" | tail -n 40 | sed 's/^/    | /'
    fi
}

{
    echo "# nvidia-smi -L"
    nvidia-smi -L
    echo
    echo "# nvidia-smi topo -m"
    nvidia-smi topo -m
    echo
} 2>&1 | tee "$RESULTS/machine.txt"

echo "# p2p probe --require-gpu" | tee -a "$RESULTS/machine.txt"
start=$(now)
if "$BIN/p2p" probe --require-gpu 2>&1 | tee -a "$RESULTS/machine.txt"; then
    record "p2p probe" ok "$start"
    probe_ok=1
else
    record "p2p probe" FAIL "$start"
    probe_ok=0
fi

if ((probe_ok)) || [[ "${KEEP_GOING:-0}" == 1 ]]; then
    start=$(now)
    if "$BIN/p2p" probe --json --require-gpu >"$RESULTS/probe.json" 2>>"$RESULTS/machine.txt"; then
        record "p2p probe --json" ok "$start"
    else
        record "p2p probe --json" FAIL "$start"
    fi

    read -r -a test_args <<<"${TEST_ARGS:-}"
    for test in "${TESTS[@]}"; do
        run_logged "$test" "$RESULTS/tests.log" "$BIN/$test" --test-threads=1 "${test_args[@]}"
    done
    # Benchmarks write their markdown tables (bench-gpu.md, bench-tch.md) to $OUT.
    export OUT="$RESULTS"
    for bench in "${BENCHES[@]}"; do
        run_logged --skip-on-2 "$bench" "$RESULTS/bench.log" "$BIN/$bench"
    done

    cli_help="$("$BIN/p2p" --help 2>&1 || true)"
    if grep -q verify <<<"$cli_help"; then
        start=$(now)
        # --require-gpu: without it, verify falls back to a simulated machine and would pass with no GPU.
        if "$BIN/p2p" verify --moves 300 --json --require-gpu >"$RESULTS/verify.json" 2>>"$RESULTS/tests.log"; then
            record "p2p verify" ok "$start"
        else
            record "p2p verify" FAIL "$start"
        fi
    fi
else
    echo "p2p probe --require-gpu failed, so the GPU binaries were not run (KEEP_GOING=1 runs them anyway)."
    for skipped in "${TESTS[@]}" "${BENCHES[@]}"; do
        names+=("$skipped")
        statuses+=(skip)
        seconds+=(-)
    done
fi

{
    printf '%-44s  %-6s  %8s\n' NAME STATUS SECONDS
    for i in "${!names[@]}"; do
        printf '%-44s  %-6s  %8s\n' "${names[$i]}" "${statuses[$i]}" "${seconds[$i]}"
    done
} >"$RESULTS/summary.txt"
echo
cat "$RESULTS/summary.txt"
if ((failed)); then
    echo "gpu-test: FAILED (logs in $RESULTS)"
    exit 1
fi
echo "gpu-test: all passed (logs in $RESULTS)"
