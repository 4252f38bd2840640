"""A scripted engine for the fast, in-process server tests: no model file, no native module, no thread.

It keeps the Engine contract (dmr.engine.protocol) so that every serving path can be exercised over it:
- the tokenizer is byte-level (token = UTF-8 byte, plus BOS and EOS), so token counts are predictable;
- each request answers with the next scripted reply (cycling), or `reply(prompt_text)` when given, emitted
  one `piece_size` of characters per token event, `delay_s` apart;
- `max_tokens` ends it with "length", a stop string with "stop" (the stop text is not emitted);
- `fail_after=N` raises EngineError after N token events: the mid-stream failure a real engine can have;
- a stream closed before its finish event counts in `aborts`, as the native engine's abort would.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dmr import errors
from dmr.engine.protocol import (
    Capabilities,
    FinishEvent,
    GenerationEvent,
    GenerationParams,
    Logprob,
    TokenEvent,
    TokenLogprobs,
    Usage,
)

BOS, EOS = 256, 257
N_VOCAB = 258
EMBED_DIM = 16


@dataclass
class FakeScript:
    """What a FakeEngine answers; tests change it between requests."""

    replies: list[str] = field(default_factory=lambda: ["Hello from the fake engine."])
    reply: Callable[[str], str] | None = None
    piece_size: int = 1
    delay_s: float = 0.0
    fail_after: int | None = None
    n_ctx: int = 4096
    chat_template: str | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)


class FakeEngine:
    def __init__(self, script: FakeScript | None = None) -> None:
        self.script = script or FakeScript()
        self._replies = itertools.cycle(list(self.script.replies))
        self.prompts: list[str] = []  # every prompt seen, decoded: what the template rendered
        self.params: list[GenerationParams] = []
        self.aborts = 0
        self.active = 0
        self.closed = False

    # --- facts ---------------------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self.script.n_ctx

    @property
    def n_vocab(self) -> int:
        return N_VOCAB

    @property
    def chat_template(self) -> str | None:
        return self.script.chat_template

    @property
    def bos_text(self) -> str:
        return "<s>"

    @property
    def eos_text(self) -> str:
        return "</s>"

    @property
    def capabilities(self) -> Capabilities:
        return self.script.capabilities

    # --- tokenizer -----------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        body = list(text.encode("utf-8"))
        return [BOS, *body] if add_special else body

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(t for t in tokens if 0 <= t < 256).decode("utf-8", "replace")

    def tokenize_prompt(self, text: str) -> list[int]:
        return self.tokenize(text)

    # --- generation ----------------------------------------------------------------------------------
    def generate(
        self, prompt: str | Sequence[int], params: GenerationParams, *, text: str | None = None
    ) -> AsyncIterator[GenerationEvent]:
        if self.closed:
            raise errors.EngineError("the engine is closed")
        tokens = self.tokenize_prompt(prompt) if isinstance(prompt, str) else list(prompt)
        prompt_text = text if text is not None else self.detokenize(tokens)
        self.prompts.append(prompt_text)
        self.params.append(params)
        answer = self.script.reply(prompt_text) if self.script.reply is not None else next(self._replies)
        return self._run(len(tokens), answer, params)

    async def _run(
        self, n_prompt: int, answer: str, params: GenerationParams
    ) -> AsyncIterator[GenerationEvent]:
        script = self.script
        finish = "stop"
        found = [(i, s) for s in params.stop if (i := answer.find(s)) >= 0]
        stop_word = min(found)[1] if found else None
        if found:
            answer = answer[: min(found)[0]]
        size = max(1, script.piece_size)
        pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
        if params.max_tokens is not None and len(pieces) > params.max_tokens:
            pieces, finish = pieces[: params.max_tokens], "length"
        self.active += 1
        done = False
        try:
            for n, piece in enumerate(pieces):
                if script.fail_after is not None and n >= script.fail_after:
                    raise errors.EngineError("the fake engine failed mid-stream (scripted)")
                if script.delay_s:
                    await asyncio.sleep(script.delay_s)
                token = piece.encode("utf-8")[0] if piece else 0
                yield TokenEvent(token, piece, _fake_logprobs(piece, n, params.logprobs))
            done = True
            yield FinishEvent(
                finish, Usage(n_prompt, 0, len(pieces)), stop_word if finish == "stop" else None
            )
        finally:
            self.active -= 1
            if not done:
                self.aborts += 1

    # --- embeddings ----------------------------------------------------------------------------------
    async def embed(
        self, inputs: Sequence[str | Sequence[int]], *, normalize: bool = True
    ) -> npt.NDArray[np.float32]:
        rows = []
        for item in inputs:
            key = item if isinstance(item, str) else self.detokenize(item)
            seed = hashlib.sha256(key.encode("utf-8")).digest()
            rows.append(np.frombuffer(seed[:EMBED_DIM], dtype=np.uint8).astype(np.float32) - 127.5)
        out = np.stack(rows) if rows else np.zeros((0, EMBED_DIM), np.float32)
        if normalize and len(rows):
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out.astype(np.float32)

    async def rerank(
        self, query: str, documents: Sequence[str]
    ) -> tuple[npt.NDArray[np.float32], int] | None:
        return None  # no rank head: the server falls back to embedding similarity

    def stats(self) -> dict[str, Any]:
        return {"streams": self.active, "aborts": self.aborts}

    async def close(self) -> None:
        self.closed = True


def _fake_logprobs(piece: str, n: int, top: int | None) -> TokenLogprobs | None:
    """Scripted log-probabilities when asked: the piece at -0.1*(n+1), then `top` made-up alternatives."""
    if top is None:
        return None
    chosen = Logprob(piece, tuple(piece.encode()), -0.1 * (n + 1))
    others = tuple(Logprob(f"alt{i}", tuple(f"alt{i}".encode()), -1.0 - i) for i in range(top))
    return TokenLogprobs(chosen, others)
