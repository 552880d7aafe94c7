#!/usr/bin/env python3
"""Mutation test of the ordering waits in crates/p2p-move/src: deletes one
wait at a time, runs the tests, restores the file, and reports each
deletion as caught (by which tests), MISSED, or unviable (did not compile).

Run from the repository root (about 10-60 s per deletion, as the machine allows; run it in the
background and poll):
    python3 xtask/mutate_waits.py --list          # the candidate deletions
    python3 xtask/mutate_waits.py                 # all of them
    python3 xtask/mutate_waits.py --only order.rs:72 --only via.rs

What counts as a wait:
* a schedule builder's `b.wait(lane, fence)` (a stream waits for a fence)
  and `b.host_wait(fence)`: the statement is deleted;
* a host-side or device-side wait call (`stream_wait_event`,
  `wait_event`, `wait_stream`, `synchronize_stream`, `synchronize()`, a
  fence's or a completion's `wait`, `wait_holding_borrows` whose result
  is only checked, `wait_inner`, `hold`): the call is replaced by an `Ok` that did not wait
  (`true`/`false` before `.is_ok()`/`.is_err()`), or, as a statement of
  its own, deleted.
Skipped: test-only code (`schedule_props.rs`, `#[cfg(test)]` items),
comments, definitions, and `cudarc_slices.rs` (CUDA-only: the simulated
backend cannot run it; the GPU tests cover it).
The mutated file and proptest regression files are restored after each
run (also on Ctrl-C); `git diff` shows nothing afterwards.
"""
import argparse
import pathlib
import re
import subprocess
import sys
import time

SRC = "crates/p2p-move/src"
SKIP_FILES = {
    "exec/schedule_props.rs": "test-only",
    "cudarc_slices.rs": "CUDA-only (cudarc streams)",
}
BUILDER = re.compile(r"\bb\.(?:wait|host_wait)\(")
CALL = re.compile(
    r"\.(?:stream_wait_event|wait_event|wait_stream|synchronize_stream|synchronize|wait|wait_inner|wait_holding_borrows)\("
)
# `hold(fence)`: waits, with no deadline, for a copy past its deadline.
HOLD = re.compile(r"(?<![\w.])(?:transfer::)?hold\(")
CORE_OK = "Ok::<(), p2p_core::Error>(())"


def code_mask(text):
    """`text` with comments and string literals blanked (same length), so scans ignore them."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            for k in range(i + 1, min(j, n)):
                if out[k] != "\n":
                    out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def match_close(code, open_at):
    """Index just past the bracket closing the one at `open_at`."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    for i in range(open_at, len(code)):
        c = code[i]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if not stack or stack.pop() != c:
                return None
            if not stack:
                return i + 1
    return None


def receiver_start(code, dot):
    """Start of the receiver expression of the method call whose `.` is at `dot`."""
    i = dot
    while i > 0:
        c = code[i - 1]
        if c.isalnum() or c in "_.?:*&":
            i -= 1
        elif c in ")]":
            depth, j = 0, i - 1
            while j >= 0:
                if code[j] in ")]":
                    depth += 1
                elif code[j] in "([":
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            i = j
        else:
            break
    return i


def test_only_ranges(code):
    """Byte ranges of `#[cfg(test)]` items (a `mod x;` line or a braced item)."""
    ranges = []
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        j = m.end()
        semi, brace = code.find(";", j), code.find("{", j)
        if brace < 0 or (0 <= semi < brace):
            ranges.append((m.start(), semi + 1))
        else:
            end = match_close(code, brace) or len(code)
            ranges.append((m.start(), end))
    return ranges


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def statement_bounds(text, start, end):
    """If [start, end) plus an optional `?` and a `;` is a whole statement, its
    deletion span (whole lines when nothing else is on them); else None."""
    k = end
    if text.startswith("?", k):
        k += 1
    if not text.startswith(";", k):
        return None
    line_start = text.rfind("\n", 0, start) + 1
    before = text[line_start:start].strip()
    if before not in ("", "let _ ="):
        return None
    stop = k + 1
    if text[stop:].split("\n", 1)[0].strip() == "":
        nl = text.find("\n", stop)
        stop = len(text) if nl < 0 else nl + 1
    return line_start, stop


def candidates(root):
    out = []
    for path in sorted((root / SRC).rglob("*.rs")):
        rel = path.relative_to(root / SRC).as_posix()
        if rel in SKIP_FILES:
            continue
        text = path.read_text()
        code = code_mask(text)
        skip = test_only_ranges(code)
        found = []
        for m in BUILDER.finditer(code):
            close = match_close(code, m.end() - 1)
            if close is None:
                continue
            span = statement_bounds(text, m.start(), close)
            if span:
                found.append((m.start(), span, ""))
        for m in HOLD.finditer(code):
            if re.search(r"\bfn\s*$", code[max(0, m.start() - 8):m.start()]):
                continue
            close = match_close(code, m.end() - 1)
            span = close and statement_bounds(text, m.start(), close)
            if span:
                found.append((m.start(), span, ""))
        for m in CALL.finditer(code):
            name = m.group(0)[1:-1]
            dot = m.start()
            start = receiver_start(code, dot)
            if start == dot or code[start:dot] == "b":
                continue  # a path like `BatchCompletion::wait`, or a builder call
            if re.search(r"\bfn\s*$", code[max(0, start - 8):start]):
                continue
            close = match_close(code, m.end() - 1)
            if close is None:
                continue
            args = code[m.end():close - 1].strip()
            rest = code[close:close + 12]
            prefix = code[text.rfind("\n", 0, start) + 1:start]
            if name == "wait_holding_borrows" and not (
                rest.startswith(".map(drop)") or prefix.rstrip().endswith("if let Err(err) =")
            ):
                continue  # its result is the move's value, not only a wait
            stmt = statement_bounds(text, start, close)
            if stmt:
                found.append((start, stmt, ""))
                continue
            if rest.startswith(".is_ok()"):
                found.append((start, (start, close + len(".is_ok()")), "true"))
            elif rest.startswith(".is_err()"):
                found.append((start, (start, close + len(".is_err()")), "false"))
            elif name == "wait_holding_borrows":
                found.append((start, (start, close), "Ok::<Vec<crate::Plan>, crate::Error>(Vec::new())"))
            elif name in ("wait", "wait_inner") and args == "":
                found.append((start, (start, close), "Ok::<(), crate::Error>(())"))
            else:
                found.append((start, (start, close), CORE_OK))
        for at, (a, b), repl in sorted(found):
            if any(s <= at < e for s, e in skip):
                continue
            shown = " ".join(text[a:b].split())
            out.append((path, a, b, repl, line_of(text, at), shown))
    return out


def label(root, cand):
    path, _, _, repl, line, shown = cand
    how = f"-> {repl}" if repl else "deleted"
    return f"{path.relative_to(root)}:{line} `{shown[:80]}` {how}"


def main():
    ap = argparse.ArgumentParser(description="Delete each ordering wait of p2p-move in turn and run the tests.")
    ap.add_argument("--list", action="store_true", help="only list the candidate deletions")
    ap.add_argument("--only", action="append", default=[],
                    help="run only candidates whose 'file:line' contains this (repeatable)")
    ap.add_argument("--test-cmd", default="cargo test -p p2p-move --quiet --lib --tests")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per mutant (a hang counts as caught)")
    args = ap.parse_args()
    root = pathlib.Path.cwd()
    if not (root / SRC).is_dir():
        sys.exit(f"run from the repository root ({SRC} not found)")
    cands = candidates(root)
    if args.only:
        cands = [c for c in cands
                 if any(o in f"{c[0].relative_to(root)}:{c[4]}" for o in args.only)]
    for rel, why in SKIP_FILES.items():
        print(f"skipped {SRC}/{rel}: {why}")
    if args.list:
        for c in cands:
            print(label(root, c))
        print(f"{len(cands)} candidates")
        return
    # proptest records each failing case of a mutant here: keep the files as they were.
    regressions = {p: p.read_text() for p in (root / "crates/p2p-move").rglob("proptest-regressions/**/*.txt")}
    results = []
    for n, cand in enumerate(cands, 1):
        path, a, b, repl, _, _ = cand
        original = path.read_text()
        path.write_text(original[:a] + repl + original[b:])
        t0 = time.time()
        try:
            proc = subprocess.run(args.test_cmd, shell=True, cwd=root, capture_output=True,
                                  text=True, timeout=args.timeout)
            out = proc.stdout + proc.stderr
            if proc.returncode == 0:
                verdict = "MISSED"
            elif "error[E" in out or "could not compile" in out:
                verdict = "unviable"
            else:
                failed = sorted(set(re.findall(r"^---- (\S+)", out, re.M)
                                    or re.findall(r"test (\S+) \.\.\. FAILED", out)))
                verdict = "caught by " + (", ".join(failed[:4]) or "a failing test binary")
                if len(failed) > 4:
                    verdict += f" (+{len(failed) - 4})"
        except subprocess.TimeoutExpired:
            verdict = "caught (timeout)"
        finally:
            path.write_text(original)
            for p in (root / "crates/p2p-move").rglob("proptest-regressions/**/*.txt"):
                if p not in regressions:
                    p.unlink()
            for p, text in regressions.items():
                p.write_text(text)
        line = f"[{n}/{len(cands)}] {label(root, cand)} -> {verdict} ({time.time() - t0:.0f}s)"
        print(line, flush=True)
        results.append((verdict, line))
    viable = [r for r in results if r[0] != "unviable"]
    missed = [r for r in results if r[0] == "MISSED"]
    print(f"\n{len(results)} deletions, {len(viable)} compiled, "
          f"{len(viable) - len(missed)} caught, {len(missed)} missed")
    for _, line in missed:
        print("MISSED:", line)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
