"""`dmr bench MODEL`: throughput and time to first token at several concurrency levels.

DMR's bench sends non-streaming requests and reads `usage`; ours streams (with usage in the last chunk)
so the same requests also give time to first token. Each level runs `concurrency` workers that send
requests back to back until `duration` is over; requests in flight then are waited for and counted.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import click
import httpx

from dmr.cli.client import Client, CliError, error_message, sse_data
from dmr.cli.output import print_json, table

DEFAULT_PROMPT = "Write a short story about whales."


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 2m")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]
    return float(m.group(1)) * scale


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None
    if not levels or any(n <= 0 for n in levels):
        raise click.BadParameter("concurrency levels must be positive integers")
    return levels


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    completion_tokens: int
    prompt_tokens: int
    duration_s: float
    tokens_per_second: float
    requests_per_second: float
    ttft_mean_ms: float | None
    ttft_p50_ms: float | None
    ttft_max_ms: float | None


def one_request(http: httpx.Client, body: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
    t0 = time.monotonic()
    ttft: float | None = None
    usage: dict[str, Any] = {}
    with http.stream("POST", "/engines/v1/chat/completions", json=body) as resp:
        if resp.status_code >= 400:
            raise CliError(error_message(resp))
        for chunk in sse_data(resp):
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                raise CliError(str(chunk["error"]))
            if ttft is None and any(
                (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
            ):
                ttft = time.monotonic() - t0
            if chunk.get("usage"):
                usage = chunk["usage"]
    return ttft, usage


def run_level(client: Client, body: dict[str, Any], concurrency: int, duration_s: float) -> LevelResult:
    lock = threading.Lock()
    ttfts: list[float] = []
    totals = {"requests": 0, "errors": 0, "completion": 0, "prompt": 0}
    errors: list[str] = []
    deadline = time.monotonic() + duration_s

    def worker() -> None:
        while time.monotonic() < deadline:
            try:
                ttft, usage = one_request(client.http, body)
            except (CliError, httpx.HTTPError) as exc:
                with lock:
                    totals["errors"] += 1
                    errors.append(str(exc))
                if totals["errors"] > 3 * concurrency:
                    return
                continue
            with lock:
                totals["requests"] += 1
                totals["completion"] += int(usage.get("completion_tokens") or 0)
                totals["prompt"] += int(usage.get("prompt_tokens") or 0)
                if ttft is not None:
                    ttfts.append(ttft)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    if totals["requests"] == 0 and errors:
        raise CliError(f"every request failed at concurrency {concurrency}: {errors[0]}")
    return LevelResult(
        concurrency=concurrency,
        requests=totals["requests"],
        errors=totals["errors"],
        completion_tokens=totals["completion"],
        prompt_tokens=totals["prompt"],
        duration_s=round(wall, 3),
        tokens_per_second=round(totals["completion"] / wall, 2) if wall > 0 else 0.0,
        requests_per_second=round(totals["requests"] / wall, 3) if wall > 0 else 0.0,
        ttft_mean_ms=round(statistics.fmean(ttfts) * 1000, 1) if ttfts else None,
        ttft_p50_ms=round(statistics.median(ttfts) * 1000, 1) if ttfts else None,
        ttft_max_ms=round(max(ttfts) * 1000, 1) if ttfts else None,
    )


@click.command()
@click.argument("model")
@click.option("--concurrency", default="1,2,4,8", show_default=True, help="Comma-separated levels.")
@click.option("--duration", default="30s", show_default=True, help="How long each level runs.")
@click.option("--prompt", default=DEFAULT_PROMPT, show_default=True)
@click.option("--max-tokens", type=int, default=128, show_default=True, help="Tokens per answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(model: str, concurrency: str, duration: str, prompt: str, max_tokens: int, as_json: bool) -> None:
    """Measure tokens/s and time to first token at several concurrency levels."""
    levels = parse_levels(concurrency)
    duration_s = parse_duration(duration)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    results = []
    with Client() as client:
        if not client.has_model(model):
            raise CliError(f"model {model} not found locally; run `dmr pull {model}` first")
        client.request(
            "POST", "/engines/v1/chat/completions", json={"model": model, "messages": []},
            headers={"X-Preload-Only": "true"},
        )  # fmt: skip
        for level in levels:
            if not as_json:
                click.echo(f"Running concurrency {level} for {duration_s:g}s...", err=True)
            results.append(run_level(client, body, level, duration_s))
    if as_json:
        print_json({"model": model, "prompt": prompt, "max_tokens": max_tokens,
                    "results": [asdict(r) for r in results]})  # fmt: skip
        return

    def ms(v: float | None) -> str:
        return f"{v:.0f}ms" if v is not None else "n/a"

    rows = [
        [str(r.concurrency), str(r.requests), str(r.errors), f"{r.tokens_per_second:.2f}",
         ms(r.ttft_mean_ms), ms(r.ttft_p50_ms)]
        for r in results
    ]  # fmt: skip
    click.echo(table(["CONCURRENCY", "REQUESTS", "ERRORS", "TOKENS/S", "TTFT MEAN", "TTFT P50"], rows))
