"""The continuous-batching engine on the real SmolLM2."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from dmr import _native as native
from dmr import config, errors
from dmr.engine.llama import EngineConfig, LlamaEngine
from dmr.engine.protocol import GenerationParams, TokenEvent

from .conftest import CHAT, chat_prompt, run, same_greedy

QUESTIONS = {
    "What is the capital of France?": "Paris",
    "What is 2+2? Answer with a number.": "4",
    "What is the capital of Japan?": "Tokyo",
    "What color is the sky on a clear day?": "blue",
    "Who wrote Romeo and Juliet?": "Shakespeare",
    "What is the chemical symbol for water?": "H",
    "How many days are in a week?": "7",
    "What is the opposite of hot?": "cold",
}


def session_greedy(model: object, prompt: str, n: int) -> list[int]:
    s = native.Session.create(model, n_ctx=2048, n_threads=2)
    return [t for t, _ in s.generate(prompt, max_tokens=n, temperature=0.0) if t >= 0]


async def test_eight_concurrent_requests(engine: LlamaEngine) -> None:
    prompts = [CHAT.format(q) for q in QUESTIONS]
    results = await asyncio.gather(*(run(engine, p, max_tokens=24) for p in prompts))
    for (toks, text, fin), p, expected in zip(results, prompts, QUESTIONS.values(), strict=True):
        assert expected.lower() in text.lower(), (p, text)
        assert fin.usage.completion_tokens == len(toks)
        assert fin.usage.prompt_tokens == len(engine.tokenize(p))
        assert fin.finish_reason in ("stop", "length")
        assert engine.detokenize(toks).startswith(text.strip()[:10])


async def test_greedy_same_alone_and_in_a_busy_batch(engine: LlamaEngine) -> None:
    prompts = [CHAT.format(q) for q in QUESTIONS]
    alone = [session_greedy(engine.model, p, 24) for p in prompts]
    busy = await asyncio.gather(*(run(engine, p, max_tokens=24) for p in prompts))
    # One KV stream per slot keeps every sequence's attention sums in the same order as when alone
    # (see csrc/engine.cpp): outputs are bit-identical, not merely close.
    assert all(same_greedy(b[0], a) for b, a in zip(busy, alone, strict=True)), ([b[0] for b in busy], alone)


async def test_prompts_arriving_together_are_evaluated_oldest_first(engine: LlamaEngine) -> None:
    # Users who got their answers in the same step send their next turns at once. Evaluating those
    # prompts one per step gives the first its first token after one prompt's work; one shared step would
    # make every one of them wait for all of it.
    busy = asyncio.ensure_future(run(engine, CHAT.format("Count from one to fifty."), max_tokens=200))
    while engine.stats()["slots_busy"] == 0 or engine.stats()["generated_tokens"] == 0:
        await asyncio.sleep(0.005)
    story = "the sea and the lighthouse, " * 12
    prompts = [engine.tokenize(CHAT.format(f"Story {i}: {story}")) for i in range(4)]
    base = engine.stats()["prompt_tokens"]
    params = GenerationParams(temperature=0.0, max_tokens=2)
    streams = [engine.generate(p, params) for p in prompts]  # submitted within microseconds
    seen_at_first_token: dict[int, int] = {}

    async def first_token(i: int) -> None:
        async for ev in streams[i]:
            if isinstance(ev, TokenEvent) and i not in seen_at_first_token:
                seen_at_first_token[i] = engine.stats()["prompt_tokens"] - base

    await asyncio.gather(*(first_token(i) for i in range(4)))
    await busy
    lengths = [len(p) for p in prompts]
    # the first submitted got its first token before the second prompt was evaluated, and the order held
    assert seen_at_first_token[0] < lengths[0] + lengths[1], (seen_at_first_token, lengths)
    firsts = sorted(seen_at_first_token, key=lambda i: seen_at_first_token[i])
    assert firsts[0] == 0 and firsts[-1] == 3, seen_at_first_token


async def test_multi_turn_reuses_every_earlier_turn(engine: LlamaEngine) -> None:
    system = "You are a helpful assistant. " * 20
    turns: list[str] = []
    previous_len = 0
    for k in range(8):
        turns.append(f"Tell me one fact about the number {k + 1}.")
        prompt = chat_prompt(*turns, system=system)
        toks, text, fin = await run(engine, prompt, max_tokens=16)
        if k > 0:
            # everything up to the previous answer's end is reused: the answer's own tokens included,
            # whatever re-tokenizing its text would give (the prompt cache keeps the generated tokens)
            assert fin.usage.cached_tokens >= previous_len - 1, (k, fin.usage, previous_len)
        previous_len = fin.usage.prompt_tokens + len(toks)
        turns.append(text)


async def test_two_conversations_taking_turns_on_two_slots_keep_their_caches(
    smollm2_path: Path, test_threads: int
) -> None:
    """Conversations sharing a short system prompt, one after the other on two idle slots: each keeps its
    own slot. Choosing the slot by the longest shared prefix alone gave the second conversation the first's
    slot (for the ten tokens they share), so each found the other's tail every other turn."""
    eng = LlamaEngine.load_sync(smollm2_path, EngineConfig(n_ctx=4096, n_slots=2, n_threads=test_threads))

    async def turn(name: str, question: str) -> int:
        """One turn of conversation `name`; returns the prompt tokens it found cached."""
        history[name].append(question)
        prompt = chat_prompt(*history[name], system=f"You are a helpful assistant. Session {name}.")
        toks, text, fin = await run(eng, prompt, max_tokens=12)
        history[name].append(text)
        reusable, ends[name] = ends.get(name, 0), fin.usage.prompt_tokens + len(toks)
        assert fin.usage.cached_tokens >= reusable - 1, (name, fin.usage, reusable)
        return fin.usage.cached_tokens

    history: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    ends: dict[str, int] = {}  # where each conversation's cache ended after its last turn
    try:
        questions = [
            "Tell me about lighthouses.",
            "Why on rocks?",
            "Who kept them?",
            "What replaced keepers?",
        ]
        for t, question in enumerate(questions):
            for name in ("a", "b") if t % 2 == 0 else ("b", "a"):
                await turn(name, question)
        # a third conversation takes the least recently used slot (b's): a's next turn still finds its own
        await turn("c", "Name a colour.")
        assert await turn("a", "Thank you.") > 100
    finally:
        await eng.close()


async def test_conversations_never_leak_under_eviction(smollm2_path: Path, test_threads: int) -> None:
    # 2 slots, 4 conversations interleaved: every turn evicts someone else's cache
    eng = LlamaEngine.load_sync(smollm2_path, EngineConfig(n_ctx=2048, n_slots=2, n_threads=test_threads))
    try:
        facts = {"alpha": "Zanzibar", "beta": "Reykjavik", "gamma": "Timbuktu", "delta": "Kathmandu"}
        history = {name: [f"Remember this: my favourite city is {city}."] for name, city in facts.items()}
        for _ in range(3):
            batch = list(history)
            results = await asyncio.gather(
                *(run(eng, chat_prompt(*history[n]), max_tokens=12) for n in batch)
            )
            for name, (toks, text, fin) in zip(batch, results, strict=True):
                # Evaluated from position 0, the engine's answer equals a fresh, isolated computation of the
                # same prompt. After a reused prefix ggml-cpu may pick another flash-attention path for the
                # rest (see csrc/engine.cpp), so there only the facts below are checked.
                if fin.usage.cached_tokens == 0:
                    assert same_greedy(toks, session_greedy(eng.model, chat_prompt(*history[name]), 12))
                for other, city in facts.items():
                    if other != name:
                        assert city not in text
                history[name] += [text, "And what else?"]
        assert eng.stats()["cached_tokens"] > 0
    finally:
        await eng.close()


@pytest.mark.parametrize("mode", ["ngram", "draft"])
async def test_speculation_gives_identical_greedy_output(
    smollm2_path: Path, test_threads: int, mode: str
) -> None:
    cfg = EngineConfig(
        n_ctx=4096,
        n_slots=2,
        n_threads=test_threads,
        speculative=mode,
        draft_model=str(smollm2_path) if mode == "draft" else None,
        # the model drafting for itself cannot pay (see the next test): keep it on to check the verification
        spec_force=True,
    )
    eng = LlamaEngine.load_sync(smollm2_path, cfg)
    text = (
        "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
        "def mul(a, b):\n    return a * b\n"
    )
    prompt = CHAT.format("Repeat this code exactly, then stop:\n" + text)
    try:
        toks, _, fin = await run(eng, prompt, max_tokens=64)
        assert same_greedy(toks, session_greedy(eng.model, prompt, 64))
        assert fin.usage.drafted_tokens > 0
        assert fin.usage.accepted_tokens > 0
        # two at once, verified in one shared batch
        both = await asyncio.gather(
            run(eng, prompt, max_tokens=48), run(eng, CHAT.format("Say hi."), max_tokens=16)
        )
        assert same_greedy(both[0][0], toks[:48])
        assert same_greedy(both[1][0], session_greedy(eng.model, CHAT.format("Say hi."), 16))
    finally:
        await eng.close()


async def test_draft_model_that_cannot_pay_is_switched_off_at_load(
    smollm2_path: Path, test_threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    # A model drafting for itself costs a full target step per drafted token, so drafting cannot pay even
    # with every draft accepted: the load-time calibration turns drafting off and says why.
    cfg = EngineConfig(
        n_ctx=2048, n_slots=1, n_threads=test_threads, speculative="draft", draft_model=str(smollm2_path)
    )
    # The verdict is an info line when drafting stays on: keep it, so that a failure shows the numbers.
    native.set_log_level(logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="dmr.llama"):
            eng = LlamaEngine.load_sync(smollm2_path, cfg)
    finally:
        native.set_log_level(config.LLAMA_LOG_LEVEL)
    try:
        assert eng.stats()["speculation"] == 0, [
            r.getMessage() for r in caplog.records if "specul" in r.getMessage()
        ]
        assert any("speculative decoding off" in r.getMessage() for r in caplog.records)
        prompt = CHAT.format("Name three colours.")
        toks, _, fin = await run(eng, prompt, max_tokens=24)
        assert fin.usage.drafted_tokens == 0
        assert same_greedy(toks, session_greedy(eng.model, prompt, 24))
    finally:
        await eng.close()
    forced = LlamaEngine.load_sync(smollm2_path, replace(cfg, spec_force=True))
    try:
        assert forced.stats()["speculation"] == 1
    finally:
        await forced.close()


async def test_errors_before_first_token(engine: LlamaEngine) -> None:
    with pytest.raises(errors.ContextFullError):
        engine.generate(list(range(100, 100 + engine.n_ctx + 5)), GenerationParams())
    with pytest.raises(errors.InvalidRequestError, match="grammar"):
        engine.generate(engine.tokenize("hi"), GenerationParams(grammar="root ::= ("))
    with pytest.raises(errors.InvalidRequestError):
        engine.generate([10**7], GenerationParams())


async def test_thousand_aborts_leave_no_trace(engine: LlamaEngine) -> None:
    prompt = engine.tokenize(CHAT.format("Write a long story about dragons."))
    await run(engine, prompt, max_tokens=4)  # warm
    gc.collect()
    before = engine.stats()
    rss_before = psutil.Process().memory_info().rss
    for i in range(1000):
        stream = engine.generate(prompt, GenerationParams(max_tokens=200, ignore_eos=True))
        if i % 2:
            await stream.__anext__()  # let some start generating
        await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(200):
        await asyncio.sleep(0.01)
        s = engine.stats()
        if s["live_requests"] == 0 and s["slots_busy"] == 0:
            break
    after = engine.stats()
    assert after["live_requests"] == 0 and after["streams"] == 0
    assert after["slots_busy"] == 0
    assert after["kv_cells_used"] <= before["kv_cells_used"] + len(prompt) * engine.stats()["slots_total"]
    gc.collect()
    rss_after = psutil.Process().memory_info().rss
    assert rss_after - rss_before < 40 * 2**20, (rss_before, rss_after)
    # and the engine still answers
    _, text, _ = await run(engine, CHAT.format("What is the capital of France?"), max_tokens=12)
    assert "Paris" in text


async def test_event_loop_stays_responsive(engine: LlamaEngine) -> None:
    lateness: list[float] = []

    async def ticker() -> None:
        for _ in range(100):
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lateness.append(time.perf_counter() - t0 - 0.01)

    prompts = [CHAT.format(q) for q in QUESTIONS][:4]
    await asyncio.gather(ticker(), *(run(engine, p, max_tokens=64, ignore_eos=True) for p in prompts))
    lateness.sort()
    p95 = lateness[int(len(lateness) * 0.95)]
    assert p95 < 0.005, f"timer p95 lateness {p95 * 1000:.1f} ms while 4 streams decode"


async def test_slow_consumer_is_paused_not_buffered_forever(engine: LlamaEngine) -> None:
    stream = engine.generate(
        engine.tokenize(CHAT.format("Count to one thousand.")),
        GenerationParams(max_tokens=600, ignore_eos=True, temperature=0.0),
    )
    await stream.__anext__()
    await asyncio.sleep(3.0)  # do not consume: the engine must stop at the backpressure mark
    buffered = len(stream._events)  # type: ignore[attr-defined]
    assert buffered <= 300, buffered
    n = 1
    async for _ in stream:
        n += 1
    assert n == 601  # 600 tokens + the finish event


async def test_step_trace_accounts_for_every_step(
    smollm2_path: Path, tmp_path: Path, test_threads: int
) -> None:
    """DMR_STEP_TRACE (EngineConfig.step_trace) writes one line per llama_decode whose rows and prompt tokens
    add up to the engine's own counters, and bench/step_trace.py reads it."""
    import importlib.util

    trace = tmp_path / "steps.txt"
    cfg = EngineConfig(n_ctx=2048, n_slots=2, n_threads=test_threads, step_trace=str(trace))
    eng = LlamaEngine.load_sync(smollm2_path, cfg)
    try:
        results = await asyncio.gather(*(run(eng, CHAT.format(q), max_tokens=6) for q in list(QUESTIONS)[:3]))
        stats = eng.stats()
    finally:
        await eng.close()
    lines = [line.split() for line in trace.read_text().splitlines()]
    assert len(lines) == stats["steps"] > 0
    assert sum(int(f[2]) for f in lines) == stats["prompt_tokens"]
    # every generated token but each request's first (which the prompt's last row yields) is a decode row
    assert sum(int(f[1]) for f in lines) == sum(len(tokens) for tokens, _, _ in results) - len(results)
    assert all(float(f[3]) > 0 for f in lines)
    spec = importlib.util.spec_from_file_location(
        "step_trace", Path(__file__).parents[2] / "bench" / "step_trace.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert f"{len(lines)} steps over" in module.summarise(trace)


async def test_a_lazy_grammar_whose_trigger_token_carries_refused_text_lets_the_answer_stand(
    engine: LlamaEngine,
) -> None:
    """A lazy grammar (tool calls under `auto`) starts at the token that completes its trigger, and that
    token may carry more than the trigger, text the grammar refuses. That failed the whole request mid-answer
    ("Unexpected empty grammar stack"); the model's text now stands and the grammar is dropped from there."""
    prompt = CHAT.format("Write one sentence about the sea.")
    free, free_text, _ = await run(engine, prompt, max_tokens=16)
    pieces = [engine.detokenize([t]) for t in free]
    # the first word-like token of three letters or more, its first two letters made the trigger
    at = next(i for i, p in enumerate(pieces) if len(p.strip()) >= 3 and p.strip()[:2].isalpha())
    head = pieces[at].strip()[:2]
    assert head not in "".join(pieces[:at]) + pieces[at].split(head)[0]  # the trigger first completes there
    grammar = f'root ::= "{head}" "\\u0001"'  # the token's next letter is refused
    toks, text, fin = await run(engine, prompt, max_tokens=16, grammar=grammar, grammar_triggers=(head,))
    assert toks == free and text == free_text
    assert fin.finish_reason == "length"


async def test_a_costly_grammar_walk_does_not_hold_other_requests_steps(engine: LlamaEngine) -> None:
    """A grammar that refuses the model's pick is walked over the whole vocabulary (1,536 alternatives:
    ~0.3 s a token here). That walk runs off the decode thread: a bystander's tokens keep coming while it
    runs, and the constrained answer is the same as it is alone."""
    words = [f"option-{i:05d}-{'abcdefghij'[i % 10]}" for i in range(1536)]
    grammar = "root ::= " + " | ".join(f'"{w}"' for w in words)
    hostile = CHAT.format("Write a long poem about the sea.")
    alone, alone_text, _ = await run(engine, hostile, max_tokens=6, grammar=grammar)
    assert alone_text in words or alone_text.startswith("option-")

    times: dict[str, list[float]] = {"hostile": [], "bystander": []}

    async def timed(name: str, prompt: str, **kw: Any) -> list[int]:
        out: list[int] = []
        params = GenerationParams(**{"temperature": 0.0, **kw})
        async for ev in engine.generate(prompt, params):
            if isinstance(ev, TokenEvent):
                out.append(ev.token)
                times[name].append(time.perf_counter())
        return out

    hostile_task = asyncio.create_task(timed("hostile", hostile, max_tokens=6, grammar=grammar))
    while not times["hostile"]:  # the grammar request is under way
        await asyncio.sleep(0.01)
    bystander = await timed("bystander", CHAT.format("Say hi."), max_tokens=24)
    constrained = await hostile_task
    assert constrained == alone
    assert len(bystander) == 24
    # the bystander's 24 tokens came while the constrained answer was still being walked token by token
    assert times["bystander"][-1] < times["hostile"][-1], times
    gaps = [b - a for a, b in zip(times["bystander"], times["bystander"][1:], strict=False)]
    walks = [b - a for a, b in zip(times["hostile"], times["hostile"][1:], strict=False)]
    assert max(gaps) < max(walks), (gaps, walks)
