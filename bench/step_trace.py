"""Summarises an engine step trace: where a workload's time went, step by step.

    DMR_STEP_TRACE=/tmp/steps.txt python bench/bench_serve.py --scenarios multiuser --peers dmr --runs 1
    python bench/step_trace.py /tmp/steps.txt

The engine writes one line per llama_decode (csrc/engine.cpp `trace_step`): start time, decode rows (a
generating request's next token, plus its drafts), prompt tokens, and seconds inside llama_decode. From
that: how much of the span the decode thread spent computing (the rest is the engine waiting for work or
doing its own bookkeeping), what a decode row and a prompt token cost, and how full the steps were.
The warm-up steps of a benchmark are included; the span starts at the first step.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path


def summarise(path: Path) -> str:
    steps = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            steps.append((float(parts[0]), int(parts[1]), int(parts[2]), float(parts[3])))
    if not steps:
        return f"{path}: no steps"
    t0 = steps[0][0]
    span = steps[-1][0] + steps[-1][3] - t0
    busy = sum(s[3] for s in steps)
    rows = sum(s[1] for s in steps)
    prompt = sum(s[2] for s in steps)
    out = [
        f"{len(steps)} steps over {span:.1f} s; inside llama_decode {busy:.1f} s ({100 * busy / span:.1f}%)",
        f"decode rows {rows}, prompt tokens {prompt}",
    ]
    pure = [s for s in steps if s[2] == 0 and s[1] > 0]
    by_rows: dict[int, list[float]] = {}
    for s in pure:
        by_rows.setdefault(s[1], []).append(s[3])
    out.append("decode-only steps: rows -> count, median ms (ms per row)")
    for n in sorted(by_rows):
        ms = 1000 * statistics.median(by_rows[n])
        out.append(f"  {n:3d} -> {len(by_rows[n]):5d}, {ms:7.1f} ({ms / n:.1f})")
    mixed = [s for s in steps if s[2] > 0]
    if mixed:
        t = sum(s[3] for s in mixed)
        out.append(
            f"steps with prompt tokens: {len(mixed)}, {t:.1f} s for {sum(s[2] for s in mixed)} prompt tokens "
            f"and {sum(s[1] for s in mixed)} decode rows"
        )
    if pure:
        t = sum(s[3] for s in pure)
        out.append(f"decode-only steps: {len(pure)}, {t:.1f} s for {sum(s[1] for s in pure)} rows")
    gaps = [b[0] - (a[0] + a[3]) for a, b in itertools.pairwise(steps)]
    if gaps:
        out.append(f"between steps: {sum(gaps):.2f} s in all, longest {1000 * max(gaps):.1f} ms")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace", type=Path)
    print(summarise(ap.parse_args().trace))


if __name__ == "__main__":
    main()
