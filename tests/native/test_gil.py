"""The GIL is released while llama.cpp works: a pure-Python thread keeps most of its solo speed."""

from __future__ import annotations

import threading
import time
from typing import Any

from dmr import _native as native


def count_for(seconds: float) -> int:
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


def test_python_thread_runs_during_generation(model: Any) -> None:
    session = native.Session.create(model, n_ctx=1024, n_threads=1, n_threads_batch=1)
    prompt = "<|im_start|>user\n" + "Tell me everything about the history of Rome. " * 30 + "<|im_end|>\n"
    solo = count_for(1.0)

    done = threading.Event()
    generated: list[int] = []

    def generate() -> None:
        while not done.is_set():
            session.reset()
            for tok, _ in session.generate(prompt, max_tokens=64, temperature=0.0, ignore_eos=True):
                generated.append(tok)
                if done.is_set():
                    break

    worker = threading.Thread(target=generate)
    worker.start()
    time.sleep(0.2)
    ratios = []
    try:
        # Best of three: other processes on a busy machine only ever lower the ratio, while a binding that
        # held the GIL during llama_decode could not reach the bar in any attempt.
        for _ in range(3):
            ratios.append(count_for(1.0) / solo)
            if ratios[-1] > 0.5:
                break
    finally:
        done.set()
        worker.join(timeout=30)
    assert generated, "the generation made no progress"
    # With the GIL held during llama_decode (8 ms a token here) the counter could only run while the
    # generating thread is forced off the GIL by the 5 ms switch interval: about 5 / (5 + 8) = 38% of its solo
    # rate. Released, it keeps 55-100% (55-61% in a full CI run on 2 cores, ~90% alone).
    assert max(ratios) > 0.5, f"Python thread ran at {max(ratios):.0%} of its solo rate while generating"
