"""Speculative decoding vs plain decoding in dmr's engine, same process, same prompts, greedy.

    python bench/bench_speculative.py [--threads 2] [--reps 3]

- n-gram (prompt lookup) on an edit workload: the answer repeats code from the prompt with small changes.
- draft model: an F16 copy of SmolLM2 (made once with llama-quantize into build/) as the target and the
  Q4_1 original as the draft: a draft that is accurate (same weights) but not much cheaper than its target
  on 2 CPU cores, where llama-server's speculation is a net loss; dmr must back off and never lose.
Reports tokens/s of each mode, the speedup over plain decoding, acceptance, and whether the generated
tokens are identical (they must be).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from tools import ROOT, build_tools  # noqa: E402

CODE = """def parse_config(path):
    settings = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def save_config(path, settings):
    with open(path, "w") as handle:
        for key, value in sorted(settings.items()):
            handle.write(f"{key} = {value}\\n")
"""

EDIT_PROMPT = (
    "<|im_start|>user\nHere is some Python code:\n\n" + CODE + "\nRewrite this code exactly, but rename the "
    "variable `handle` to `fh`. Output only the code.<|im_end|>\n<|im_start|>assistant\n"
)
STORY_PROMPT = (
    "<|im_start|>user\nWrite a short story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n"
)


async def timed(engine: object, prompt: str, max_tokens: int) -> tuple[list[int], float, int, int]:
    from dmr.engine.protocol import FinishEvent, GenerationParams, TokenEvent

    params = GenerationParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    tokens: list[int] = []
    t_first = t_last = 0.0
    drafted = accepted = 0
    async for ev in engine.generate(engine.tokenize(prompt), params):  # type: ignore[attr-defined]
        now = time.perf_counter()
        if isinstance(ev, TokenEvent):
            if not tokens:
                t_first = now
            tokens.append(ev.token)
            t_last = now
        elif isinstance(ev, FinishEvent):
            drafted, accepted = ev.usage.drafted_tokens, ev.usage.accepted_tokens
    return tokens, (len(tokens) - 1) / (t_last - t_first), drafted, accepted


async def run_mode(model: Path, threads: int, reps: int, prompt: str, max_tokens: int, **cfg: object) -> dict:
    from dmr.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine.load_sync(model, EngineConfig(n_ctx=4096, n_slots=1, n_threads=threads, **cfg))
    try:
        await timed(engine, STORY_PROMPT, 8)  # warm-up
        runs = [await timed(engine, prompt, max_tokens) for _ in range(reps)]
    finally:
        await engine.close()
    return {
        "tokens": runs[0][0],
        "tps": statistics.median(r[1] for r in runs),
        "acceptance": (sum(r[3] for r in runs) / sum(r[2] for r in runs))
        if sum(r[2] for r in runs)
        else None,
    }


def f16_copy(model: Path) -> Path:
    out = ROOT / "build" / "models" / (model.stem.replace("Q4_1", "F16") + ".gguf")
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        quantize = build_tools(("llama-quantize",))["llama-quantize"]
        subprocess.run(
            [str(quantize), "--allow-requantize", str(model), str(out), "F16"],
            check=True,
            capture_output=True,
        )
    return out


async def main() -> None:
    from conftest import smollm2_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=192)
    args = ap.parse_args()
    q4 = smollm2_file()
    f16 = f16_copy(q4)

    rows = []
    plain = await run_mode(q4, args.threads, args.reps, EDIT_PROMPT, args.max_tokens)
    ngram = await run_mode(q4, args.threads, args.reps, EDIT_PROMPT, args.max_tokens, speculative="ngram")
    rows.append(("n-gram, edit workload (Q4_1)", plain, ngram))
    for name, prompt in (("edit", EDIT_PROMPT), ("story", STORY_PROMPT)):
        plain_f16 = await run_mode(f16, args.threads, args.reps, prompt, args.max_tokens)
        draft = await run_mode(
            f16, args.threads, args.reps, prompt, args.max_tokens, speculative="draft", draft_model=str(q4)
        )
        rows.append((f"draft Q4_1 -> target F16, {name}", plain_f16, draft))

    print(f"threads: {args.threads}, {args.max_tokens} greedy tokens, median of {args.reps}\n")
    print("| workload | plain t/s | speculative t/s | speedup | acceptance | identical greedy tokens |")
    print("|---|---|---|---|---|---|")
    for label, base, spec in rows:
        acc = "-" if spec["acceptance"] is None else f"{spec['acceptance']:.0%}"
        a, b = base["tokens"], spec["tokens"]
        diff = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None)
        same = f"all {len(a)}" if diff is None and len(a) == len(b) else f"first {diff}"
        speedup = spec["tps"] / base["tps"]
        print(f"| {label} | {base['tps']:.1f} | {spec['tps']:.1f} | {speedup:.2f}x | {acc} | {same} |")


if __name__ == "__main__":
    asyncio.run(main())
