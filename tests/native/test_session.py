from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dmr import _native as native
from dmr import errors

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def greedy(session: Any, prompt: str, n: int = 32, **kw: Any) -> tuple[list[int], str]:
    tokens: list[int] = []
    text = []
    for tok, piece in session.generate(prompt, max_tokens=n, temperature=0.0, **kw):
        if tok >= 0:
            tokens.append(tok)
        text.append(piece)
    return tokens, "".join(text)


def test_greedy_is_deterministic(session: Any, smollm2_path: Path) -> None:
    prompt = CHAT.format("What is the capital of France?")
    session.reset()
    a = greedy(session, prompt)
    session.reset()
    b = greedy(session, prompt)
    assert a == b
    assert "Paris" in a[1]
    assert session.finish_reason in ("stop", "length")
    # ... and across processes
    code = (
        "import json,sys; from dmr import _native as n; m=n.Model.load(sys.argv[1]);"
        "s=n.Session.create(m, n_ctx=2048, n_threads=2);"
        "print(json.dumps([t for t,_ in s.generate(sys.argv[2], max_tokens=32, temperature=0.0) if t>=0]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(smollm2_path), prompt],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == a[0]


def test_seeded_sampling_is_reproducible(session: Any) -> None:
    prompt = CHAT.format("Tell me a short story about a cat.")
    runs = {}
    for seed in (1, 1, 2):
        session.reset()
        toks = [
            t
            for t, _ in session.generate(
                prompt, max_tokens=24, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed
            )
        ]
        runs.setdefault(seed, []).append(toks)
    assert runs[1][0] == runs[1][1]
    assert runs[1][0] != runs[2][0]


def test_max_tokens_and_usage(session: Any) -> None:
    prompt = CHAT.format("Count from one to fifty in words.")
    toks, _ = greedy(session, prompt, n=7)
    assert len(toks) == 7
    assert session.finish_reason == "length"
    usage = session.usage
    assert usage["completion_tokens"] == 7
    assert usage["prompt_tokens"] == len(session.model.tokenize(prompt, parse_special=True))


def test_grammar_output_always_parses(session: Any) -> None:
    grammar = r"""
root   ::= "{" ws "\"name\"" ws ":" ws string "," ws "\"age\"" ws ":" ws number ws "}"
string ::= "\"" [a-zA-Z ]{1,20} "\""
number ::= [1-9] [0-9]{0,2}
ws     ::= [ ]?
"""
    prompt = CHAT.format("Describe a person as JSON with a name and an age.")
    for seed in range(4):
        session.reset()
        text = session.complete(prompt, max_tokens=64, temperature=1.0, seed=seed, grammar=grammar)
        obj = json.loads(text)
        assert set(obj) == {"name", "age"} and isinstance(obj["age"], int)
        assert session.finish_reason == "stop"


def test_a_grammar_too_costly_to_evaluate_fails_only_its_request(session: Any) -> None:
    # Sixteen overlapping optional repetitions: every word splits across them in countless ways, and one
    # token's check over the vocabulary took ~5 s (forty of them: 111 s), the decode step held meanwhile.
    # Written out in a row they are refused up front; behind a rule name, the time limit stops them.
    prompt = CHAT.format("Write some letters")
    in_a_row = "root ::= " + " ".join(["[a-z]{0,30}"] * 40)
    t0 = time.monotonic()
    with pytest.raises(errors.InvalidRequestError, match="in a row"):
        session.complete(prompt, max_tokens=8, temperature=0.0, grammar=in_a_row)
    assert time.monotonic() - t0 < 1
    session.reset()
    ambiguous = "root ::= " + " ".join(["w"] * 16) + "\nw ::= [a-z]{0,30}"
    t0 = time.monotonic()
    with pytest.raises(errors.InvalidRequestError, match="too costly to evaluate"):
        session.complete(prompt, max_tokens=8, temperature=0.0, grammar=ambiguous)
    assert time.monotonic() - t0 < 30
    # a large grammar that is not ambiguous is not refused: 1,500 alternatives (near the most allowed)
    session.reset()
    words = " | ".join(f'"w{i}"' for i in range(1500))
    text = session.complete(prompt, max_tokens=8, temperature=0.0, grammar=f"root ::= {words}")
    assert text.startswith("w") and text[1:].isdigit()


def test_bad_grammar_is_a_clear_error(session: Any) -> None:
    with pytest.raises(errors.InvalidRequestError, match="grammar"):
        session.start(CHAT.format("hi"), grammar="root ::= (unclosed")


def test_stop_strings_spanning_tokens(session: Any, model: Any) -> None:
    prompt = CHAT.format("Write three sentences about the sea.")
    session.reset()
    toks, full = greedy(session, prompt, n=48)
    # pick a stop string that starts inside one token and ends inside a later one
    pieces = [model.token_to_piece(t).decode("utf-8", "replace") for t in toks]
    offset = len(pieces[0]) + len(pieces[1]) + len(pieces[2])
    assert len(pieces[3]) >= 2 or len(pieces[4]) >= 2
    start = offset - 1  # last char of token 2
    stop = full[start : start + len(pieces[3]) + 2]  # runs into token 4
    assert full.find(stop) == start
    session.reset()
    _, text = greedy(session, prompt, n=48, stop=["never-there", stop])
    assert text == full[:start]
    assert session.finish_reason == "stop"


def test_kv_cache_prefix_reuse(session: Any) -> None:
    turn1 = CHAT.format("My name is Ada. Remember it.")
    session.reset()
    answer = session.complete(turn1, max_tokens=16, temperature=0.0)
    assert session.usage["cached_tokens"] == 0
    n_turn1 = len(session.kv_tokens)
    turn2 = turn1 + answer + "<|im_end|>\n" + CHAT.format("What is my name?")
    session.complete(turn2, max_tokens=8, temperature=0.0)
    # everything before the (re-tokenised) answer boundary is reused
    assert session.usage["cached_tokens"] >= n_turn1 - 16
    assert session.usage["cached_tokens"] > 20


def test_prompt_longer_than_context(model: Any, test_threads: int) -> None:
    small = native.Session.create(model, n_ctx=64, n_threads=test_threads)
    long_prompt = " ".join(["word"] * 600)
    with pytest.raises(errors.ContextFullError, match=f"context holds {small.n_ctx}") as info:
        small.start(long_prompt)
    assert f"{len(model.tokenize(long_prompt, parse_special=True))} tokens" in str(info.value)
    # the session is still usable afterwards
    assert small.complete("Hi", max_tokens=2, temperature=0.0) is not None


def test_generation_stops_at_context_end(model: Any, test_threads: int) -> None:
    small = native.Session.create(model, n_ctx=32, n_threads=test_threads)
    toks = [t for t, _ in small.generate("Once upon a time", temperature=0.0, ignore_eos=True)]
    assert small.finish_reason == "length"
    assert len(toks) + small.usage["prompt_tokens"] == small.n_ctx


def test_abort_from_another_thread(model: Any, test_threads: int) -> None:
    s = native.Session.create(model, n_ctx=1024, n_threads=test_threads)
    got: list[int] = []

    def run() -> None:
        with pytest.raises(errors.AbortedError):
            for tok, _ in s.generate("Once upon a time", temperature=0.0, ignore_eos=True, max_tokens=900):
                got.append(tok)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    s.abort()
    t.join(timeout=10)
    assert not t.is_alive()
    assert 0 < len(got) < 900
    # and the session works again
    assert s.complete("Hi", max_tokens=2, temperature=0.0) is not None


def test_invalid_prompt_tokens(session: Any) -> None:
    with pytest.raises(errors.InvalidRequestError):
        session.start([1, 2, 99_999_999])
    with pytest.raises(errors.InvalidRequestError):
        session.start([])


def test_prefix_reuse_gives_the_same_tokens(model: Any, test_threads: int) -> None:
    """A prompt evaluated after a cached prefix (from position k, not 0) gives exactly the tokens of a fresh
    evaluation, as long as both evaluations stay on the same ggml-cpu attention path (under 64 new prompt
    rows and 512 cache cells; see csrc/engine.cpp for where that ends)."""
    code = (
        "def parse(path):\n    with open(path) as handle:\n        return [line.strip() for line in handle]\n"
    )
    prompt = CHAT.format("Rewrite this code, renaming handle to fh:\n" + code)
    fresh = native.Session.create(model, n_ctx=2048, n_threads=test_threads)
    expected = [
        t for t, _ in fresh.generate(prompt, max_tokens=48, temperature=0.0, ignore_eos=True) if t >= 0
    ]
    reused = native.Session.create(model, n_ctx=2048, n_threads=test_threads)
    reused.complete(CHAT.format("Write a short story about a lighthouse."), max_tokens=8, temperature=0.0)
    got = [t for t, _ in reused.generate(prompt, max_tokens=48, temperature=0.0, ignore_eos=True) if t >= 0]
    assert reused.usage["cached_tokens"] > 0
    if native.BACKEND == "cpu":
        assert got == expected
    else:
        assert len(got) == len(expected)
