from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dmr import _native as native
from dmr.engine.llama import EngineConfig, LlamaEngine
from dmr.engine.protocol import FinishEvent, GenerationParams, TokenEvent

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"

#: On the CPU backend a sequence's result does not depend on what else is in the batch (one KV stream per
#: slot, per-row kernels): outputs are compared token for token. GPU backends pick other kernels for other
#: batch shapes (cuBLAS/MMQ vs MMVQ on CUDA): on an H100, 8 of 8 test prompts kept their first token but
#: near-tied prompts ("Say hi.") flipped even that, so there only the isolation checks (facts never cross
#: conversations) and the coherence checks hold.
EXACT = native.BACKEND == "cpu"


def same_greedy(got: list[int], expected: list[int]) -> bool:
    return got == expected if EXACT else bool(got) and bool(expected)


def chat_prompt(*turns: str, system: str | None = None) -> str:
    """ChatML for alternating user/assistant turns, ending ready for the assistant."""
    parts = [f"<|im_start|>system\n{system}<|im_end|>\n"] if system else []
    for i, turn in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        parts.append(f"<|im_start|>{role}\n{turn}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


async def run(engine: LlamaEngine, prompt: str | list[int], **kw: Any) -> tuple[list[int], str, FinishEvent]:
    params = GenerationParams(**{"temperature": 0.0, "max_tokens": 32, **kw})
    out: list[int] = []
    text: list[str] = []
    finish = None
    async for ev in engine.generate(prompt, params):
        if isinstance(ev, TokenEvent):
            out.append(ev.token)
            text.append(ev.text)
        else:
            finish = ev
    assert finish is not None
    return out, "".join(text), finish


@pytest.fixture(scope="module")
def engine(smollm2_path: Path, test_threads: int) -> Iterator[LlamaEngine]:
    eng = LlamaEngine.load_sync(smollm2_path, EngineConfig(n_ctx=8192, n_slots=4, n_threads=test_threads))
    yield eng
    eng._native.close()
