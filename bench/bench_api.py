"""The server's own overheads, side by side with llama-server (same llama.cpp source, same model):

    python bench/bench_api.py [--threads 2] [--rounds 3] [--requests 4000]

1. GET /engines/v1/models (llama-server: GET /v1/models): requests/s with Apache Bench (`ab -k`, keep-alive),
   1 and 8 concurrent clients. A cheap route shows the fixed cost of the HTTP stack per request.
2. Per-token streaming overhead: one greedy 256-token stream (ignore_eos) read over HTTP as server-sent
   events, against the same generation from dmr's engine called in-process (no HTTP, no JSON). The
   overhead per token is 1/(t/s over HTTP) - 1/(t/s in-process), in milliseconds; llama-server's HTTP
   figure is shown beside it.
Each configuration is measured in rounds (one of each per round) and reported as medians.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_serve import dmr_server, free_port, llama_server, start, stop  # noqa: E402

from tools import build_tools  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper and the sea."
MAX_TOKENS = 256


def ab_rps(url: str, concurrency: int, requests: int) -> float:
    out = subprocess.run(
        ["ab", "-q", "-k", "-c", str(concurrency), "-n", str(requests), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    if failed and int(failed.group(1)):
        raise RuntimeError(f"ab: {failed.group(1)} failed requests against {url}")
    match = re.search(r"Requests per second:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(out)
    return float(match.group(1))


def stream_tps(port: int, prefix: str) -> float:
    """Greedy 256-token chat stream read as raw SSE; tokens/s from the first content chunk to the last."""
    body = json.dumps(
        {
            "model": "ai/smollm2",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        }
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", f"{prefix}/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{resp.status}: {resp.read()[:200]!r}")
    n = 0
    t_first = t_last = 0.0
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        chunk = json.loads(line[5:])
        choices = chunk.get("choices") or []
        if choices and (choices[0].get("delta") or {}).get("content"):
            now = time.perf_counter()
            if n == 0:
                t_first = now
            t_last = now
            n += 1
    conn.close()
    return (n - 1) / (t_last - t_first)


def inprocess_tps(model: Path, threads: int) -> float:
    """The same generation through LlamaEngine directly, in a child process of its own."""
    code = f"""
import asyncio, time
from dmr.engine.chat import CHATML, ChatTemplate
from dmr.engine.llama import EngineConfig, LlamaEngine
from dmr.engine.protocol import GenerationParams, TokenEvent
async def main():
    eng = LlamaEngine.load_sync({str(model)!r}, EngineConfig(n_ctx=8192, n_slots=1, n_threads={threads}))
    template = ChatTemplate(eng.model.chat_template or CHATML)
    prompt = eng.tokenize_prompt(template.render([{{"role": "user", "content": {PROMPT!r}}}]))
    params = GenerationParams(temperature=0.0, max_tokens={MAX_TOKENS}, ignore_eos=True)
    n, t0, t1 = 0, 0.0, 0.0
    async for ev in eng.generate(prompt, params):
        if isinstance(ev, TokenEvent) and ev.text:
            now = time.perf_counter()
            t0 = t0 or now
            t1 = now
            n += 1
    await eng.close()
    print((n - 1) / (t1 - t0))
asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from conftest import smollm2_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--out-dir", type=Path, default=HERE.parent / "build" / "bench-api")
    args = ap.parse_args()
    if not shutil.which("ab"):
        sys.exit("needs Apache Bench (Debian: apache2-utils)")
    model = smollm2_file()
    exe = build_tools(("llama-server",))["llama-server"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="dmr-bench-api-"))
    from dmr.models.package import package
    from dmr.models.store import Store

    package(Store(store), gguf=model, tags=["ai/smollm2"])

    figures: dict[str, dict[str, list[float]]] = {"dmr": {}, "llama-server": {}, "in-process": {}}
    try:
        for _ in range(args.rounds):
            for peer in ("dmr", "llama-server"):
                port = free_port()
                if peer == "dmr":
                    server = dmr_server(port, store, args.threads, 1, 8192)
                else:
                    server = llama_server(exe, port, model, args.threads, 1, 8192)
                proc = start(server, args.out_dir / f"{peer}.log")
                try:
                    url = f"http://127.0.0.1:{port}{server.prefix}/models"
                    stream_tps(port, server.prefix)  # loads the model (dmr loads lazily) and warms up
                    f = figures[peer]
                    f.setdefault("GET /models req/s, 1 client", []).append(ab_rps(url, 1, args.requests))
                    f.setdefault("GET /models req/s, 8 clients", []).append(ab_rps(url, 8, args.requests))
                    f.setdefault("stream t/s (256 tok)", []).append(stream_tps(port, server.prefix))
                finally:
                    stop(proc)
            figures["in-process"].setdefault("stream t/s (256 tok)", []).append(
                inprocess_tps(model, args.threads)
            )
    finally:
        shutil.rmtree(store, ignore_errors=True)

    med: dict[str, dict[str, float]] = {
        peer: {k: statistics.median(v) for k, v in f.items()} for peer, f in figures.items()
    }
    print(f"threads: {args.threads}, {args.rounds} rounds, medians; ab -k, {args.requests} requests\n")
    print("| figure | dmr | llama-server | dmr / llama-server |")
    print("|---|---|---|---|")
    for key in med["dmr"]:
        a, b = med["dmr"][key], med["llama-server"][key]
        print(f"| {key} | {a:.0f} | {b:.0f} | {a / b:.2f} |")
    inproc = med["in-process"]["stream t/s (256 tok)"]
    http_tps = med["dmr"]["stream t/s (256 tok)"]
    overhead_ms = 1000 / http_tps - 1000 / inproc
    print(
        f"\nstreaming: in-process engine {inproc:.1f} t/s, over HTTP {http_tps:.1f} t/s "
        f"({http_tps / inproc:.3f}); overhead {overhead_ms:+.2f} ms per token"
    )
    json.dump(figures, open(args.out_dir / "figures.json", "w"), indent=1)  # noqa: SIM115


if __name__ == "__main__":
    main()
