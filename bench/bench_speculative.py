"""Speculative decoding vs plain decoding in dmr's engine, same process, same prompts, greedy.

    python bench/bench_speculative.py [--threads 2] [--reps 3]

- n-gram (prompt lookup) on an edit workload: the answer repeats code from the prompt with small changes.
- draft model: an F16 copy of SmolLM2 (made once with llama-quantize into build/) as the target and the
  Q4_1 original as the draft: a draft that is accurate (same weights) but not much cheaper than its target
  on 2 CPU cores, where llama-server's speculation is a net loss; dmr must back off and never lose. The
  engine's load-time calibration switches such a drafter off; "forced on" rows keep it (spec_force) to
  show the per-request back-off on its own.
Reports tokens/s of each mode, the speedup over plain decoding, acceptance, and whether the generated
tokens are identical (they must be).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
PARAGRAPH = (
    "The lighthouse stood on a rocky point at the edge of the bay. Every evening the keeper climbed the "
    "ninety-two steps to the lamp room, cleaned the great lens, trimmed the wick and lit the flame. Ships"
    " passing in the night saw the beam sweep across the water every ten seconds, and they knew where the"
    " rocks were. In winter the storms came from the north, and the waves broke over the gallery rail. "
    "The keeper kept a log of every ship, every storm and every repair. He wrote in a small, neat hand, "
    "and he never missed a day. When the new electric lamp arrived, the keeper was sad to see the old "
    "flame go, but he kept the brass oil can on a shelf in the kitchen, polished and ready, just in case."
)
PROOFREAD_PROMPT = (
    "<|im_start|>user\nFix the spelling mistakes in this text and return the whole corrected text:\n\n"
    + PARAGRAPH.replace("stood", "stod").replace("storms", "storsm")
    + "<|im_end|>\n<|im_start|>assistant\n"
)
STORY_PROMPT = (
    "<|im_start|>user\nWrite a short story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n"
)


async def timed(
    engine: object, prompt: str, max_tokens: int, ignore_eos: bool = True
) -> tuple[list[int], float, int, int]:
    from dmr.engine.protocol import FinishEvent, GenerationParams, TokenEvent

    params = GenerationParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=ignore_eos)
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


async def run_mode(
    model: Path, threads: int, reps: int, prompt: str, max_tokens: int, ignore_eos: bool = True, **cfg: object
) -> dict:
    from dmr.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine.load_sync(model, EngineConfig(n_ctx=4096, n_slots=1, n_threads=threads, **cfg))
    try:
        await timed(engine, STORY_PROMPT, 8)  # warm-up
        runs = [await timed(engine, prompt, max_tokens, ignore_eos) for _ in range(reps)]
    finally:
        await engine.close()
    return {
        "tokens": runs[0][0],
        "tps": [r[1] for r in runs],
        "drafted": sum(r[2] for r in runs),
        "accepted": sum(r[3] for r in runs),
    }


def run_isolated(
    model: Path, threads: int, prompt: str, max_tokens: int, ignore_eos: bool, **cfg: object
) -> dict:
    """One measurement in a fresh process: a process that has run another model decodes measurably slower
    afterwards (seen here: F16 at 0.6-0.85 of its speed after a Q4_1 engine ran in the same process), so
    configurations never share one."""
    spec = {
        "model": str(model),
        "threads": threads,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "ignore_eos": ignore_eos,
        "cfg": cfg,
    }
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(spec)], check=True, capture_output=True, text=True
    )
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def one(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result = asyncio.run(
        run_mode(
            Path(spec["model"]),
            spec["threads"],
            1,
            spec["prompt"],
            spec["max_tokens"],
            spec["ignore_eos"],
            **spec["cfg"],
        )
    )
    print(json.dumps(result))


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


def main() -> None:
    from conftest import smollm2_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.one)
        return
    q4 = smollm2_file()
    f16 = f16_copy(q4)
    draft = {"speculative": "draft", "draft_model": str(q4)}
    ngram = {"speculative": "ngram"}
    # proofreading answers end by themselves (their length is the text's); the rest run max_tokens
    configs: dict[str, tuple[Path, str, dict[str, object]]] = {
        "plain q4 proofread": (q4, PROOFREAD_PROMPT, {"ignore_eos": False}),
        "ngram q4 proofread": (q4, PROOFREAD_PROMPT, {"ignore_eos": False, **ngram}),
        "plain q4 edit": (q4, EDIT_PROMPT, {}),
        "ngram q4 edit": (q4, EDIT_PROMPT, ngram),
        "plain f16 edit": (f16, EDIT_PROMPT, {}),
        "draft f16 edit": (f16, EDIT_PROMPT, draft),
        "forced f16 edit": (f16, EDIT_PROMPT, {**draft, "spec_force": True}),
        "plain f16 story": (f16, STORY_PROMPT, {}),
        "draft f16 story": (f16, STORY_PROMPT, draft),
        "forced f16 story": (f16, STORY_PROMPT, {**draft, "spec_force": True}),
    }
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(args.reps):  # rounds: every configuration once per round, each in its own process
        for name, (model, prompt, cfg) in configs.items():
            opts = dict(cfg)
            ignore_eos = bool(opts.pop("ignore_eos", True))
            result = run_isolated(model, args.threads, prompt, args.max_tokens, ignore_eos, **opts)
            results[name].append(result)

    def tps(name: str) -> float:
        return statistics.median(t for r in results[name] for t in r["tps"])

    rows = [
        ("n-gram, proofreading (Q4_1)", "plain q4 proofread", "ngram q4 proofread"),
        ("n-gram, code rewrite (Q4_1)", "plain q4 edit", "ngram q4 edit"),
        ("draft Q4_1 -> target F16, edit", "plain f16 edit", "draft f16 edit"),
        ("draft Q4_1 -> target F16, edit, forced on", "plain f16 edit", "forced f16 edit"),
        ("draft Q4_1 -> target F16, story", "plain f16 story", "draft f16 story"),
        ("draft Q4_1 -> target F16, story, forced on", "plain f16 story", "forced f16 story"),
    ]
    head = f"threads: {args.threads}, {args.max_tokens} greedy tokens, median of {args.reps}, a process each"
    print(head + "\n")
    print("| workload | plain t/s | speculative t/s | speedup | acceptance | identical greedy tokens |")
    print("|---|---|---|---|---|---|")
    for label, base, spec in rows:
        drafted = sum(r["drafted"] for r in results[spec])
        accepted = sum(r["accepted"] for r in results[spec])
        acc = "-" if not drafted else f"{accepted / drafted:.0%}"
        a, b = results[base][0]["tokens"], results[spec][0]["tokens"]
        diff = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None)
        same = f"all {len(a)}" if diff is None and len(a) == len(b) else f"first {diff}"
        ratio = tps(spec) / tps(base)
        print(f"| {label} | {tps(base):.1f} | {tps(spec):.1f} | {ratio:.2f}x | {acc} | {same} |")


if __name__ == "__main__":
    main()
