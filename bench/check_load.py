"""Do bench/load.py and ../shared/bench/load.py measure the same? Both, alternating, against one server.

    python bench/check_load.py --base-url http://127.0.0.1:12434 --prefix /engines/v1 --model ai/smollm2

Runs each harness `--rounds` times (alternating, so both see the same drift) with the same workloads and
arguments, and prints each figure's median from both and their ratio (in repo / shared). The shared copy is
the one the quoted peer figures came from; a ratio near 1.0 (within this machine's ~10% drift) means the
in-repo harness measures the same workloads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HARNESSES = {"in repo": HERE / "load.py", "shared": HERE.parent.parent / "shared" / "bench" / "load.py"}

#: (label, path in the summary JSON to a {min, median, max} object)
FIGURES = [
    ("single: decode t/s", ("single", "decode_tps_client")),
    ("single: TTFT s", ("single", "ttft_s")),
    ("multiturn: sum of TTFT s", ("multiturn", "modes", "default", "sum_ttft_s")),
]


def run_once(harness: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [
            sys.executable,
            str(harness),
            "--base-url",
            args.base_url,
            "--prefix",
            args.prefix,
            "--model",
            args.model,
            "--workloads",
            "single,multiturn",
            "--cache-modes",
            "default",
            "--runs",
            str(args.runs),
            "--max-tokens",
            str(args.max_tokens),
            "--ignore-eos",
            "--out",
            out.name,
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        doc: dict[str, Any] = json.loads(Path(out.name).read_text())
        return doc


def dig(doc: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    if isinstance(doc, dict):
        doc = doc.get("median")
    return float(doc) if isinstance(doc, int | float) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--prefix", default="/engines/v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    missing = [str(p) for p in HARNESSES.values() if not p.is_file()]
    if missing:
        sys.exit(f"missing: {', '.join(missing)}")
    values: dict[str, dict[str, list[float]]] = {name: {f: [] for f, _ in FIGURES} for name in HARNESSES}
    for _ in range(args.rounds):
        for name, harness in HARNESSES.items():
            summary = run_once(harness, args)["results"]
            for label, path in FIGURES:
                v = dig(summary, path)
                if v is not None:
                    values[name][label].append(v)
    print("| figure | bench/load.py | ../shared/bench/load.py | ratio |")
    print("|---|---|---|---|")
    for label, _ in FIGURES:
        ours, theirs = values["in repo"][label], values["shared"][label]
        if not ours or not theirs:
            print(f"| {label} | - | - | - |")
            continue
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"| {label} | {a:.3g} | {b:.3g} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
