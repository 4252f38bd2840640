"""A conversation through the Responses API's `previous_response_id` against the same conversation sent as
full chat/completions, on one `dmr serve` in one run:

    python bench/bench_responses.py [--rounds 5] [--turns 4] [--threads 2] [--max-tokens 48]

Each round holds one 4-turn conversation of each kind, greedy and streamed, run turn by turn side by side
(which kind goes first alternating), so that both see the same moments of a busy machine. A Responses turn
sends only the new user message and the previous response's id (the server rebuilds the conversation from
its store); a chat turn sends the whole conversation, with the answers as the server returned them. Each
conversation opens with a system message of its own, so that neither kind reuses the other's cached
prompt: what each reuses is its own earlier turns. TTFT is the time from sending the request to the first
text delta. Warm turns are turns 2..N; the acceptance figure (issue 14) is the
ratio of their median TTFT, Responses / chat, within 10%.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_serve import dmr_server, free_port, start, stop  # noqa: E402

MODEL = "ai/smollm2"
QUESTIONS = [
    "Tell me about lighthouses in two sentences.",
    "Why were they built on rocks?",
    "Who kept them running?",
    "What replaced the keepers?",
    "Summarise our conversation.",
    "Thank you.",
]


def stream(port: int, path: str, body: dict[str, Any]) -> tuple[float, str, dict[str, Any]]:
    """(TTFT s, the answer's text, the final usage) of one streamed request, read as raw SSE."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status}: {resp.read()[:300]!r}")
    ttft: float | None = None
    text: list[str] = []
    usage: dict[str, Any] = {}
    rid = ""
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        doc = json.loads(line[5:])
        delta = ""
        if doc.get("type") == "response.output_text.delta":  # Responses
            delta = doc["delta"]
        elif doc.get("type") in ("response.completed", "response.incomplete"):
            usage, rid = doc["response"]["usage"], doc["response"]["id"]
        elif "choices" in doc:  # chat
            choices = doc["choices"]
            delta = (choices[0].get("delta") or {}).get("content") or "" if choices else ""
            if doc.get("usage"):
                usage = doc["usage"]
        if delta:
            if ttft is None:
                ttft = time.perf_counter() - t0
            text.append(delta)
    conn.close()
    if ttft is None:
        raise RuntimeError(f"{path}: no text in the answer")
    usage["id"] = rid
    return ttft, "".join(text), usage


class ResponsesConversation:
    """One conversation through previous_response_id: each turn sends the new message and the last id."""

    def __init__(self, port: int, system: str, max_tokens: int) -> None:
        self.port, self.system, self.max_tokens = port, system, max_tokens
        self.previous: str | None = None

    def turn(self, question: str) -> tuple[float, int]:
        """(TTFT, cached prompt tokens)."""
        body: dict[str, Any] = {
            "model": MODEL,
            "input": question,
            "instructions": self.system,
            "stream": True,
            "temperature": 0,
            "max_output_tokens": self.max_tokens,
        }
        if self.previous is not None:
            body["previous_response_id"] = self.previous
        ttft, _, usage = stream(self.port, "/engines/v1/responses", body)
        self.previous = usage["id"]
        return ttft, int(usage["input_tokens_details"]["cached_tokens"])


class ChatConversation:
    """The same conversation as full chat/completions: each turn sends all of it, answers as returned."""

    def __init__(self, port: int, system: str, max_tokens: int) -> None:
        self.port, self.max_tokens = port, max_tokens
        self.messages: list[dict[str, str]] = [{"role": "system", "content": system}]

    def turn(self, question: str) -> tuple[float, int]:
        self.messages.append({"role": "user", "content": question})
        body = {
            "model": MODEL,
            "messages": self.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        ttft, answer, usage = stream(self.port, "/engines/v1/chat/completions", body)
        self.messages.append({"role": "assistant", "content": answer})
        return ttft, int(usage["prompt_tokens_details"]["cached_tokens"])


def main() -> None:
    from conftest import smollm2_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--out-dir", type=Path, default=HERE.parent / "build" / "bench-responses")
    args = ap.parse_args()
    if not 2 <= args.turns <= len(QUESTIONS):
        sys.exit(f"--turns must be between 2 and {len(QUESTIONS)}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="dmr-bench-responses-"))
    from dmr.models.package import package
    from dmr.models.store import Store

    package(Store(store), gguf=smollm2_file(), tags=[MODEL])
    kinds = {"responses": ResponsesConversation, "chat": ChatConversation}
    runs: dict[str, list[list[tuple[float, int]]]] = {k: [] for k in kinds}
    port = free_port()
    proc = start(dmr_server(port, store, args.threads, 2, 4096), args.out_dir / "dmr.log")
    try:
        ChatConversation(port, "Warm-up.", 8).turn("Hi")  # loads the model
        for r in range(args.rounds):
            convs = {
                k: make(
                    port, f"You are a helpful assistant. Session {uuid.uuid4().hex[:8]}.", args.max_tokens
                )
                for k, make in kinds.items()
            }
            for k in kinds:
                runs[k].append([])
            # turn by turn, alternating which kind goes first: both see the same moments of a busy machine
            for t, question in enumerate(QUESTIONS[: args.turns]):
                order = list(kinds) if (r + t) % 2 == 0 else list(kinds)[::-1]
                for k in order:
                    runs[k][-1].append(convs[k].turn(question))
    finally:
        stop(proc)
        shutil.rmtree(store, ignore_errors=True)
    (args.out_dir / "results.json").write_text(json.dumps(runs, indent=1))

    def warm(kind: str) -> float:
        return statistics.median(t for conv in runs[kind] for t, _ in conv[1:])

    def turn(kind: str, i: int) -> tuple[float, float]:
        return (
            statistics.median(conv[i][0] for conv in runs[kind]),
            statistics.median(conv[i][1] for conv in runs[kind]),
        )

    print(
        f"model: SmolLM2-135M-Instruct Q4_1, threads: {args.threads}, 2 slots of 4096 (one per conversation),"
        f" {args.rounds} rounds, {args.turns} turns, greedy, {args.max_tokens} tokens per answer; medians\n"
    )
    print("| turn | Responses TTFT ms (cached tokens) | chat TTFT ms (cached tokens) | Responses / chat |")
    print("|---|---|---|---|")
    for i in range(args.turns):
        (a, ca), (b, cb) = turn("responses", i), turn("chat", i)
        print(f"| {i + 1} | {a * 1000:.1f} ({ca:.0f}) | {b * 1000:.1f} ({cb:.0f}) | {a / b:.2f} |")
    a, b = warm("responses"), warm("chat")
    per_round = [
        statistics.median(t for t, _ in x[1:]) / statistics.median(t for t, _ in y[1:])
        for x, y in zip(runs["responses"], runs["chat"], strict=True)
    ]
    print(
        f"| warm turns 2-{args.turns} | {a * 1000:.1f} | {b * 1000:.1f} | {a / b:.2f} "
        f"(per round {min(per_round):.2f}-{max(per_round):.2f}) |"
    )


if __name__ == "__main__":
    main()
