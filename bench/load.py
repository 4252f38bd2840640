#!/usr/bin/env python3
# The load harness bench/ runs, kept in the repo so that bench/ works from a clean clone. It is
# ../shared/bench/load.py (which produced the peer figures quoted in the engine issue) with formatting and
# lint fixes only; bench/check_load.py runs both on one server and shows they measure the same.
# ruff: noqa: B023  (each worker thread is joined inside the loop iteration whose variables it reads)
"""Side-by-side load harness for OpenAI-compatible chat servers.

Stdlib only (threads + http.client), so it runs from any Python >= 3.8
without installing anything and adds as little client CPU load as possible
(the client usually shares the machine with the server being measured).

Workloads (select with --workloads, comma separated):

  single      one streaming chat request at a time (greedy, max_tokens N):
              client TTFT, client decode tok/s, end-to-end tok/s, plus the
              server's own `timings` object when it sends one (llama-server).
  multiturn   an N-turn chat: ~300-token system prompt, each turn appends the
              previous assistant answer and a new ~60-token user message.
              Per-turn TTFT with the server's default prompt caching and,
              when 'off' is in --cache-modes, with "cache_prompt": false in
              the request body (llama-server's switch; servers that ignore
              unknown fields will simply keep their default behaviour).
  concurrent  C simultaneous streaming clients (each --conc-max-tokens):
              aggregate generated tok/s, p50/p95 TTFT, per-request stats.
  multiuser   --users U simultaneous multi-turn conversations (the multiturn
              script, each user sending its next turn when its answer ends):
              TTFT of warm turns (2..T) p50/p95/mean, cold-turn TTFT, wall.

Every figure is repeated --runs times; the summary gives min/median/max.
The summary is printed as JSON on stdout (and written to --out if given).

Routes: requests go to  <base-url><prefix>/chat/completions  where --prefix
defaults to /v1; pass --prefix /engines/v1 for servers that mount their
OpenAI routes there.

Examples:
  python3 load.py --base-url http://127.0.0.1:8080 --model smollm2 \
      --workloads single,multiturn,concurrent --ignore-eos
  python3 load.py --base-url http://127.0.0.1:8000 --prefix /engines/v1 \
      --model smollm2 --workloads single
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Any

# ---------------------------------------------------------------------------
# Prompts (deterministic, no randomness so every server sees identical text)
# ---------------------------------------------------------------------------

SINGLE_PROMPT = (
    "Write a very long, detailed essay about the history of computing, from "
    "mechanical calculators to modern microprocessors. Cover every decade, "
    "name important people and machines, and use many paragraphs."
)

# ~300 tokens with the SmolLM2 / Llama-style BPE tokenizers.
SYSTEM_PROMPT = (
    "You are Orion, a patient and precise assistant that helps a small team "
    "run a community bakery. The bakery opens at six in the morning and closes "
    "at two in the afternoon, Tuesday through Sunday. It sells sourdough loaves, "
    "rye bread, baguettes, cinnamon rolls, croissants, seasonal fruit tarts and "
    "a small selection of vegan cookies. Flour is delivered every Monday and "
    "Thursday by a local mill; butter and milk arrive daily from a dairy two "
    "villages away. The team has five members: Ana manages orders and the "
    "budget, Bruno bakes bread overnight, Chloe handles pastries, Dmitri works "
    "the counter and the coffee machine, and Eun-ji keeps the social media "
    "accounts and the website up to date. When you answer, follow these rules. "
    "First, be concise and practical, and prefer short numbered steps when a "
    "procedure is involved. Second, never invent prices, quantities or "
    "supplier names that were not given to you; if information is missing, say "
    "what is missing and ask a single clarifying question. Third, when a "
    "question involves food safety, mention the relevant temperature or time "
    "limit explicitly. Fourth, keep a friendly tone, but do not use emojis. "
    "Fifth, when asked to draft a message to customers, keep it under eighty "
    "words and sign it as 'The Bakery Team'. Sixth, if a request is outside "
    "the bakery's business, politely decline and suggest who could help."
)

# Eight ~60-token user turns.
USER_TURNS = [
    "Good morning Orion. Bruno says the sourdough came out flat again this "
    "week, for the third time. The kitchen has been colder than usual because "
    "the heater broke on Saturday. What should he change in the overnight "
    "proof so the loaves rise properly until the heater is fixed?",
    "Thanks. Ana wants to know how we should track the flour we use each day "
    "so we can order the right amount from the mill on Mondays and Thursdays. "
    "She prefers a simple spreadsheet. Which columns should it have, and how "
    "should she use it to decide the order size?",
    "Chloe is planning a new seasonal tart for the autumn with apples and "
    "pears from a nearby orchard. She is worried about the fruit releasing too "
    "much juice and making the pastry soggy. Give her a few practical "
    "techniques to keep the base crisp during baking and display.",
    "Dmitri noticed that the line at the counter gets very long between "
    "seven and eight in the morning, and some customers leave before they are "
    "served. We cannot hire anyone new right now. Suggest changes to the "
    "counter routine that could shorten waiting time during that hour.",
    "Eun-ji would like to post a short message on the website announcing that "
    "the bakery will be closed next Tuesday for a deep clean of the ovens. "
    "Please draft that message for her, following your rules for customer "
    "messages, and mention that we reopen on Wednesday as usual.",
    "A customer asked whether our vegan cookies are safe for someone with a "
    "nut allergy. They are made in the same kitchen where we prepare almond "
    "croissants. How should Dmitri answer this question honestly, and what "
    "should we change in our labels to make this clearer in the future?",
    "The dairy told us that the milk delivery might be late by two hours on "
    "Friday. Our cinnamon rolls use a milk-based dough that is prepared at "
    "four in the morning. What options do we have to still have rolls ready "
    "when we open at six, without compromising quality or safety?",
    "Finally, please summarise everything we discussed today as a short list "
    "of action items, one line each, with the name of the team member "
    "responsible for each item, so that Ana can pin it on the notice board "
    "in the kitchen before the Saturday shift starts.",
]

CONC_PROMPTS = [
    "Explain how a refrigerator works, step by step, in plain language.",
    "Describe the water cycle and why it matters for agriculture.",
    "Write a short story about a lighthouse keeper and a lost ship.",
    "List the main differences between a violin and a cello, in detail.",
    "Explain the rules of chess to a complete beginner.",
    "Describe how bread is made, from wheat field to bakery shelf.",
    "Explain why the sky is blue and sunsets are red.",
    "Write a letter from a traveller describing a mountain village.",
    "Describe the life cycle of a butterfly with vivid details.",
    "Explain how a bicycle stays upright while moving.",
    "Describe a busy train station at rush hour.",
    "Explain what a compiler does, for someone who never programmed.",
    "Write a poem-like description of autumn in a city park.",
    "Explain how vaccines train the immune system.",
    "Describe how bees make honey and organise their hive.",
    "Explain the basics of budgeting for a first apartment.",
]


# ---------------------------------------------------------------------------
# HTTP / SSE client
# ---------------------------------------------------------------------------


class Target:
    def __init__(self, base_url: str, prefix: str, api_key: str | None, timeout: float):
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https"):
            raise SystemExit(f"unsupported scheme in --base-url: {base_url}")
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        base_path = u.path.rstrip("/")
        prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.chat_path = f"{base_path}{prefix}/chat/completions"
        self.models_path = f"{base_path}{prefix}/models"
        self.api_key = api_key
        self.timeout = timeout

    def conn(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def get_models(self) -> Any:
        c = self.conn()
        try:
            c.request("GET", self.models_path, headers=self.headers())
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                return {"status": r.status, "body": body[:500].decode("utf-8", "replace")}
            return json.loads(body)
        except Exception as e:
            return {"error": repr(e)}
        finally:
            c.close()


def stream_chat(
    target: Target, body: dict[str, Any], t_start_barrier: threading.Barrier | None = None
) -> dict[str, Any]:
    """Send one streaming chat request; return timing/record dict.

    ttft_s: request sent -> first chunk carrying non-empty delta content.
    decode_tps_client: (n_chunks_with_content - 1) / (t_last - t_first).
    """
    body = dict(body)
    body["stream"] = True
    payload = json.dumps(body).encode("utf-8")
    c = target.conn()
    rec: dict[str, Any] = {"ok": False}
    text_parts: list[str] = []
    n_content_chunks = 0
    t_first = None
    t_last = None
    usage = None
    timings = None
    finish_reason = None
    try:
        if t_start_barrier is not None:
            t_start_barrier.wait()
        t0 = time.perf_counter()
        c.request("POST", target.chat_path, body=payload, headers=target.headers())
        r = c.getresponse()
        if r.status != 200:
            rec["status"] = r.status
            rec["error"] = r.read()[:1000].decode("utf-8", "replace")
            return rec
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line or line.startswith(b":"):
                continue  # blank separator or SSE comment / ping
            if not line.startswith(b"data:"):
                continue  # event:, id:, retry: lines
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            now = time.perf_counter()
            try:
                obj = json.loads(data)
            except ValueError:
                continue
            if "error" in obj and not obj.get("choices"):
                rec["error"] = obj["error"]
                break
            if obj.get("usage"):
                usage = obj["usage"]
            if obj.get("timings"):
                timings = obj["timings"]
            for ch in obj.get("choices") or []:
                delta = ch.get("delta") or {}
                piece = delta.get("content")
                if piece is None:
                    piece = delta.get("reasoning_content")
                if piece:
                    n_content_chunks += 1
                    text_parts.append(piece)
                    if t_first is None:
                        t_first = now
                    t_last = now
                if ch.get("finish_reason"):
                    finish_reason = ch["finish_reason"]
        t_end = time.perf_counter()
        rec["ok"] = t_first is not None
    except Exception as e:
        rec["error"] = repr(e)
        return rec
    finally:
        c.close()

    n_tokens = None
    if usage and usage.get("completion_tokens") is not None:
        n_tokens = int(usage["completion_tokens"])
    elif timings and timings.get("predicted_n") is not None:
        n_tokens = int(timings["predicted_n"])
    rec.update(
        {
            "t_start": t0,
            "t_first": t_first,
            "t_last": t_last,
            "t_end": t_end,
            "ttft_s": (t_first - t0) if t_first is not None else None,
            "total_s": t_end - t0,
            "n_content_chunks": n_content_chunks,
            "completion_tokens": n_tokens if n_tokens is not None else n_content_chunks,
            "completion_tokens_source": (
                "usage"
                if usage and usage.get("completion_tokens") is not None
                else "timings"
                if n_tokens is not None
                else "chunks"
            ),
            "finish_reason": finish_reason,
            "usage": usage,
            "timings": timings,
            "text": "".join(text_parts),
        }
    )
    ntok = rec["completion_tokens"]
    if t_first is not None and t_last is not None and t_last > t_first and ntok > 1:
        rec["decode_tps_client"] = (ntok - 1) / (t_last - t_first)
    else:
        rec["decode_tps_client"] = None
    rec["e2e_tps_client"] = ntok / (t_end - t0) if t_end > t0 else None
    return rec


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def mmm(values: list[float | None]) -> dict[str, float] | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)}


def pct(values: list[float], p: float) -> float | None:
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    if len(v) == 1:
        return v[0]
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def base_body(
    args: argparse.Namespace,
    messages: list[dict[str, str]],
    max_tokens: int,
    ignore_eos: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": args.model,
        "messages": messages,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": max_tokens,
        "seed": 42,
    }
    if args.include_usage:
        body["stream_options"] = {"include_usage": True}
    if ignore_eos:
        body["ignore_eos"] = True
    if args.extra_json:
        body.update(json.loads(args.extra_json))
    if extra:
        body.update(extra)
    return body


def strip_rec(rec: dict[str, Any], keep_text: int = 80) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if k not in ("t_start", "t_first", "t_last", "t_end", "text")}
    if rec.get("text") is not None and keep_text:
        out["text_head"] = rec["text"][:keep_text]
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------


def nonce() -> str:
    """Short random tag put at the very start of a prompt so that no server-side
    prompt/KV cache (slot reuse, host-RAM prompt cache) can serve it from an
    earlier run or an earlier harness invocation."""
    return uuid.uuid4().hex[:12]


def wl_single(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    prompt = args.prompt or SINGLE_PROMPT
    runs = []
    for i in range(args.runs):
        msgs = []
        system = args.single_system or "You are a helpful assistant."
        if args.single_prompt_mode == "fresh":
            system = f"Request id {nonce()}. {system}"
        msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": prompt})
        body = base_body(
            args,
            msgs,
            args.max_tokens,
            args.ignore_eos,
            {"cache_prompt": False} if args.single_no_cache else None,
        )
        rec = stream_chat(target, body)
        log(
            f"[single] run {i + 1}/{args.runs}: ttft={rec.get('ttft_s')} "
            f"tok={rec.get('completion_tokens')} decode_tps={rec.get('decode_tps_client')} "
            f"finish={rec.get('finish_reason')} err={rec.get('error')}"
        )
        runs.append(rec)
    srv_pred = [r["timings"].get("predicted_per_second") if r.get("timings") else None for r in runs]
    srv_prompt = [r["timings"].get("prompt_per_second") if r.get("timings") else None for r in runs]
    srv_prompt_ms = [r["timings"].get("prompt_ms") if r.get("timings") else None for r in runs]
    acc = []
    for r in runs:
        t = r.get("timings") or {}
        if t.get("draft_n"):
            acc.append(t.get("draft_n_accepted", 0) / t["draft_n"])
    return {
        "max_tokens": args.max_tokens,
        "ignore_eos": args.ignore_eos,
        "prompt_mode": args.single_prompt_mode,
        "ttft_s": mmm([r.get("ttft_s") for r in runs]),
        "decode_tps_client": mmm([r.get("decode_tps_client") for r in runs]),
        "e2e_tps_client": mmm([r.get("e2e_tps_client") for r in runs]),
        "completion_tokens": mmm([r.get("completion_tokens") for r in runs]),
        "server_predicted_per_second": mmm(srv_pred),
        "server_prompt_per_second": mmm(srv_prompt),
        "server_prompt_ms": mmm(srv_prompt_ms),
        "server_draft_acceptance": mmm(acc) if acc else None,
        "texts_identical_across_runs": len({r.get("text") for r in runs}) == 1,
        "runs": [strip_rec(r) for r in runs],
    }


def wl_multiturn(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    turns = USER_TURNS[: args.turns]
    out: dict[str, Any] = {"turns": len(turns), "max_tokens_per_turn": args.mt_max_tokens, "modes": {}}
    for mode in [m.strip() for m in args.cache_modes.split(",") if m.strip()]:
        extra = {"cache_prompt": False} if mode == "off" else None
        per_run: list[list[dict[str, Any]]] = []
        for run in range(args.runs):
            # per-run conversation id first, so turn 1 of run 2 cannot reuse run 1's KV
            msgs = [{"role": "system", "content": f"Conversation id {nonce()}. {SYSTEM_PROMPT}"}]
            recs = []
            for ti, u in enumerate(turns):
                msgs.append({"role": "user", "content": u})
                body = base_body(args, msgs, args.mt_max_tokens, args.mt_ignore_eos, extra)
                rec = stream_chat(target, body)
                recs.append(rec)
                log(
                    f"[multiturn:{mode}] run {run + 1} turn {ti + 1}: ttft={rec.get('ttft_s')} "
                    f"tok={rec.get('completion_tokens')} err={rec.get('error')}"
                )
                msgs.append({"role": "assistant", "content": rec.get("text", "")})
            per_run.append(recs)
        per_turn = []
        for ti in range(len(turns)):
            rs = [per_run[r][ti] for r in range(len(per_run))]
            t = [r.get("timings") or {} for r in rs]
            u = [r.get("usage") or {} for r in rs]
            per_turn.append(
                {
                    "turn": ti + 1,
                    "ttft_s": mmm([r.get("ttft_s") for r in rs]),
                    "prompt_tokens": mmm([x.get("prompt_tokens") for x in u]),
                    "server_prompt_n": mmm([x.get("prompt_n") for x in t]),
                    "server_cache_n": mmm([x.get("cache_n") for x in t]),
                    "server_prompt_ms": mmm([x.get("prompt_ms") for x in t]),
                    "completion_tokens": mmm([r.get("completion_tokens") for r in rs]),
                }
            )
        sum_ttft = [sum((r.get("ttft_s") or 0.0) for r in recs) for recs in per_run]
        texts_same = all(
            len({per_run[r][ti].get("text") for r in range(len(per_run))}) == 1 for ti in range(len(turns))
        )
        out["modes"][mode] = {
            "per_turn": per_turn,
            "sum_ttft_s": mmm(sum_ttft),
            "texts_identical_across_runs": texts_same,
        }
    return out


def wl_concurrent(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"max_tokens": args.conc_max_tokens, "levels": {}}
    for level in [int(x) for x in args.concurrency.split(",") if x.strip()]:
        runs = []
        for run in range(args.runs):
            tag = nonce()
            barrier = threading.Barrier(level)
            results: list[dict[str, Any] | None] = [None] * level

            # distinct prompt per client, with a fresh random tag per run so the
            # server can't serve any of it from an earlier run's KV / prompt cache
            def worker(i: int) -> None:
                p = CONC_PROMPTS[(i + run * level) % len(CONC_PROMPTS)]
                p = f"[{tag} client {i}] {p}"
                body = base_body(
                    args, [{"role": "user", "content": p}], args.conc_max_tokens, args.ignore_eos
                )
                results[i] = stream_chat(target, body, barrier)

            ths = [threading.Thread(target=worker, args=(i,)) for i in range(level)]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            recs = [r or {"ok": False, "error": "no result"} for r in results]
            good = [r for r in recs if r.get("t_start") is not None]
            if good:
                t0 = min(r["t_start"] for r in good)
                t1 = max(r["t_end"] for r in good)
                tot = sum(r.get("completion_tokens") or 0 for r in good)
                agg = tot / (t1 - t0) if t1 > t0 else None
            else:
                agg, tot, t0, t1 = None, 0, 0.0, 0.0
            ttfts = [r.get("ttft_s") for r in recs if r.get("ttft_s") is not None]
            full = sum(1 for r in recs if (r.get("completion_tokens") or 0) >= args.conc_max_tokens)
            run_sum = {
                "wall_s": (t1 - t0) if good else None,
                "total_completion_tokens": tot,
                "aggregate_tps": agg,
                "ttft_p50_s": pct(ttfts, 50),
                "ttft_p95_s": pct(ttfts, 95),
                "ttft_max_s": max(ttfts) if ttfts else None,
                "requests_ok": sum(1 for r in recs if r.get("ok")),
                "requests_reaching_max_tokens": full,
                "per_request_decode_tps_median": pct(
                    [r.get("decode_tps_client") for r in recs if r.get("decode_tps_client")], 50
                ),
                "errors": [r.get("error") for r in recs if r.get("error")][:3],
                "finish_reasons": [r.get("finish_reason") for r in recs],
                "completion_tokens": [r.get("completion_tokens") for r in recs],
            }
            log(
                f"[concurrent:{level}] run {run + 1}: agg_tps={agg} ttft_p50={run_sum['ttft_p50_s']} "
                f"ttft_p95={run_sum['ttft_p95_s']} full={full}/{level} tokens={tot}"
            )
            runs.append(run_sum)
        out["levels"][str(level)] = {
            "aggregate_tps": mmm([r["aggregate_tps"] for r in runs]),
            "ttft_p50_s": mmm([r["ttft_p50_s"] for r in runs]),
            "ttft_p95_s": mmm([r["ttft_p95_s"] for r in runs]),
            "wall_s": mmm([r["wall_s"] for r in runs]),
            "requests_reaching_max_tokens": [r["requests_reaching_max_tokens"] for r in runs],
            "runs": runs,
        }
    return out


def wl_multiuser(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """U users chat at once, each its own multi-turn conversation (each user sends its next turn as soon
    as its previous answer is complete). Shows whether prefix reuse survives many live conversations:
    warm turns (2..T) should cost only their new tokens."""
    turns = USER_TURNS[: args.turns]
    users = args.users
    runs = []
    for run in range(args.runs):
        tag = nonce()
        barrier = threading.Barrier(users)
        per_user: list[list[dict[str, Any]]] = [[] for _ in range(users)]

        def worker(i: int) -> None:
            msgs = [{"role": "system", "content": f"Conversation {tag}-{i}. {SYSTEM_PROMPT}"}]
            for ti, u in enumerate(turns):
                msgs.append({"role": "user", "content": u})
                body = base_body(args, msgs, args.mt_max_tokens, args.mt_ignore_eos)
                rec = stream_chat(target, body, barrier if ti == 0 else None)
                per_user[i].append(rec)
                msgs.append({"role": "assistant", "content": rec.get("text", "")})

        ths = [threading.Thread(target=worker, args=(i,)) for i in range(users)]
        t0 = time.perf_counter()
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        wall = time.perf_counter() - t0
        warm = [r.get("ttft_s") for recs in per_user for r in recs[1:] if r.get("ttft_s") is not None]
        cold = [recs[0].get("ttft_s") for recs in per_user if recs and recs[0].get("ttft_s") is not None]
        errors = [r.get("error") for recs in per_user for r in recs if r.get("error")]
        run_sum = {
            "wall_s": wall,
            "warm_ttft_p50_s": pct(warm, 50),
            "warm_ttft_p95_s": pct(warm, 95),
            "warm_ttft_mean_s": (sum(warm) / len(warm)) if warm else None,
            "cold_ttft_p50_s": pct(cold, 50),
            "turns_ok": sum(1 for recs in per_user for r in recs if r.get("ok")),
            "errors": errors[:3],
        }
        log(
            f"[multiuser:{users}] run {run + 1}: warm p50={run_sum['warm_ttft_p50_s']} "
            f"p95={run_sum['warm_ttft_p95_s']} wall={wall:.1f}s ok={run_sum['turns_ok']}/{users * len(turns)}"
        )
        runs.append(run_sum)
    return {
        "users": users,
        "turns": len(turns),
        "warm_ttft_p50_s": mmm([r["warm_ttft_p50_s"] for r in runs]),
        "warm_ttft_p95_s": mmm([r["warm_ttft_p95_s"] for r in runs]),
        "warm_ttft_mean_s": mmm([r["warm_ttft_mean_s"] for r in runs]),
        "wall_s": mmm([r["wall_s"] for r in runs]),
        "runs": runs,
    }


def read_proc_mem(pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {"pid": pid}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k + "_kB"] = int(v.split()[0])
    except OSError as e:
        out["error"] = repr(e)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080")
    ap.add_argument(
        "--prefix", default="/v1", help="path prefix of the OpenAI routes (default /v1; e.g. /engines/v1)"
    )
    ap.add_argument("--model", required=True, help="model name sent in the request body")
    ap.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    ap.add_argument("--workloads", default="single,multiturn,concurrent")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up requests")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--label", default="", help="free-form label copied into the summary")
    # single
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument(
        "--ignore-eos",
        action="store_true",
        help="send ignore_eos=true (llama-server extension) in single/concurrent",
    )
    ap.add_argument("--prompt", default=None, help="override the single-stream user prompt")
    ap.add_argument("--single-system", default=None, help="optional system prompt for single")
    ap.add_argument(
        "--single-prompt-mode",
        choices=["fresh", "same"],
        default="fresh",
        help="fresh (default): random request id at the start of the system "
        "prompt, so TTFT includes full prompt processing; same: identical "
        "prompt every run (TTFT then shows the server's prompt-cache hit)",
    )
    ap.add_argument(
        "--single-no-cache",
        action="store_true",
        help="send cache_prompt=false in single (forces full prompt eval each run)",
    )
    # multiturn
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--mt-max-tokens", type=int, default=64)
    ap.add_argument(
        "--mt-ignore-eos",
        action="store_true",
        help="send ignore_eos=true in multiturn (fixed-length answers)",
    )
    ap.add_argument(
        "--cache-modes",
        default="default,off",
        help="'default' = server default; 'off' = cache_prompt:false in body",
    )
    # concurrent
    ap.add_argument("--concurrency", default="4,8")
    ap.add_argument("--conc-max-tokens", type=int, default=128)
    ap.add_argument("--users", type=int, default=8, help="multiuser: simultaneous multi-turn conversations")
    # misc
    ap.add_argument("--include-usage", action="store_true", help="send stream_options.include_usage=true")
    ap.add_argument("--extra-json", default=None, help="JSON object merged into every request body")
    ap.add_argument(
        "--server-pid",
        type=int,
        default=None,
        help="local server PID: report VmRSS/VmHWM from /proc after the run",
    )
    ap.add_argument("--out", default=None, help="also write the JSON summary here")
    args = ap.parse_args()

    target = Target(args.base_url, args.prefix, args.api_key, args.timeout)
    summary: dict[str, Any] = {
        "label": args.label,
        "base_url": args.base_url,
        "chat_path": target.chat_path,
        "model": args.model,
        "runs": args.runs,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models_endpoint": target.get_models(),
        "results": {},
    }
    for i in range(args.warmup):
        rec = stream_chat(target, base_body(args, [{"role": "user", "content": "Say hello."}], 16, False))
        log(f"[warmup {i + 1}] ok={rec.get('ok')} ttft={rec.get('ttft_s')} err={rec.get('error')}")
        if not rec.get("ok"):
            summary["warmup_error"] = rec.get("error") or rec.get("status")

    wls = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in wls:
        t0 = time.perf_counter()
        if w == "single":
            summary["results"]["single"] = wl_single(target, args)
        elif w == "multiturn":
            summary["results"]["multiturn"] = wl_multiturn(target, args)
        elif w == "concurrent":
            summary["results"]["concurrent"] = wl_concurrent(target, args)
        elif w == "multiuser":
            summary["results"]["multiuser"] = wl_multiuser(target, args)
        else:
            raise SystemExit(f"unknown workload {w!r}")
        summary["results"][w]["elapsed_s"] = time.perf_counter() - t0
    if args.server_pid:
        summary["server_mem"] = read_proc_mem(args.server_pid)
    summary["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    js = json.dumps(summary, indent=2, default=str)
    if args.out:
        with open(args.out, "w") as f:
            f.write(js + "\n")
    print(js)


if __name__ == "__main__":
    main()
