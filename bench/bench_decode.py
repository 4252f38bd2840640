"""Prompt processing (pp512) and generation (tg128) speed of dmr's binding vs llama-bench, same source,
same model, same thread count, one run, reported as ratios.

    python bench/bench_decode.py [--threads 2] [--reps 5] [--rounds 2] [--model PATH] [--n-gpu-layers 0]

llama-bench's tg128 decodes 128 tokens without sampling; ours samples (greedy) and detokenizes every
token, as a real request does. Rounds alternate llama-bench and dmr to average out machine drift.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tools import build_tools


def llama_bench(exe: Path, model: Path, threads: int, reps: int, ngl: int) -> dict[str, float]:
    out = subprocess.run(
        [
            str(exe),
            "-m",
            str(model),
            "-t",
            str(threads),
            "-p",
            "512",
            "-n",
            "128",
            "-r",
            str(reps),
            "-ngl",
            str(ngl),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(out.stdout)
    result = {}
    for row in rows:
        key = "pp512" if row["n_prompt"] == 512 and row["n_gen"] == 0 else "tg128"
        result[key] = float(row["avg_ts"])
    return result


def dmr_bench(model_path: Path, threads: int, reps: int, ngl: int) -> dict[str, float]:
    from dmr import _native as native

    model = native.Model.load(model_path, n_gpu_layers=ngl)
    session = native.Session.create(model, n_ctx=1024, n_batch=2048, n_ubatch=512, n_threads=threads)
    # llama-bench's prompt: random token ids; any 512 valid ids exercise the same kernels
    prompt = [(i * 7919) % (model.n_vocab - 100) + 100 for i in range(512)]
    bos = model.special_tokens["bos"]

    def pp() -> float:
        session.reset()
        t0 = time.perf_counter()
        session.start(prompt, max_tokens=1, temperature=0.0)
        return 512 / (time.perf_counter() - t0)

    def tg() -> float:
        session.reset()
        session.start([bos], max_tokens=128, temperature=0.0, ignore_eos=True)
        session.next()  # first token comes from the prompt's logits; time 128 decode+sample steps after it
        t0 = time.perf_counter()
        n = 0
        while n < 128:
            _, _, finish = session.next()
            n += 1
            if finish:
                break
        return n / (time.perf_counter() - t0)

    pp(), tg()  # warm-up, as llama-bench does
    return {
        "pp512": statistics.mean(pp() for _ in range(reps)),
        "tg128": statistics.mean(tg() for _ in range(reps)),
    }


def main() -> None:
    from conftest import smollm2_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-gpu-layers", type=int, default=0)
    ap.add_argument("--llama-bench", type=Path, default=None)
    args = ap.parse_args()
    model = args.model or smollm2_file()
    exe = args.llama_bench or build_tools(("llama-bench",))["llama-bench"]

    ref: dict[str, list[float]] = {"pp512": [], "tg128": []}
    ours: dict[str, list[float]] = {"pp512": [], "tg128": []}
    for i in range(args.rounds):
        # alternate who goes first, so a drift of the machine does not favour one side
        order = [("ref", ref), ("ours", ours)] if i % 2 == 0 else [("ours", ours), ("ref", ref)]
        for who, sink in order:
            if who == "ref":
                res = llama_bench(exe, model, args.threads, args.reps, args.n_gpu_layers)
            else:
                res = dmr_bench(model, args.threads, args.reps, args.n_gpu_layers)
            for k, v in res.items():
                sink[k].append(v)

    print(
        f"model: {model.name}, threads: {args.threads}, n_gpu_layers: {args.n_gpu_layers}, "
        f"{args.rounds} rounds of {args.reps} reps, medians; ratio range = per-round min-max\n"
    )
    print("| test | llama-bench (t/s) | dmr binding (t/s) | ratio | ratio range |")
    print("|---|---|---|---|---|")
    for k in ("pp512", "tg128"):
        r, o = statistics.median(ref[k]), statistics.median(ours[k])
        per_round = [b / a for a, b in zip(ref[k], ours[k], strict=True)]
        print(f"| {k} | {r:.1f} | {o:.1f} | {o / r:.3f} | {min(per_round):.2f}-{max(per_round):.2f} |")


if __name__ == "__main__":
    main()
