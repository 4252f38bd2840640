"""The interface the server and scheduler see. Engines: llama.py (in-process llama.cpp), vllm.py (later).

Contract
- generate() returns an async iterator; each item is a TokenEvent until one final FinishEvent.
  Cancelling the iteration (client gone) aborts the request in the engine: it leaves the batch at the next
  step and its cache cells stay as a reusable prefix.
- Errors known before the first token (prompt too long, bad grammar) raise from generate() itself, before
  any event; later failures raise from the iterator. All are dmr.errors classes with an http_status.
- Every method is safe to call from the event loop thread; none blocks it for more than microseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

#: The range every sampling parameter must lie in, by GenerationParams field: what a request may send and
#: what `_configure` may set as a model's default (one table, so the two cannot disagree).
SAMPLING_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 100.0),
    "top_p": (0.0, 1.0),
    "min_p": (0.0, 1.0),
    "top_k": (0, 1 << 30),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "repeat_penalty": (0.01, 10.0),  # 1 is off; 0 divides by zero in llama.cpp's penalties sampler
    "penalty_last_n": (-1, 1 << 20),
}


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int | None = None
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
    grammar_triggers: tuple[str, ...] = ()  # regexes: the grammar applies from the first match on (lazy)
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    speculative: bool = True
    logprobs: int | None = None  # None: none; 0: each token's own; N: also the N most likely (<= 20)

    def native_kwargs(self) -> dict[str, Any]:
        return {
            "n_probs": -1 if self.logprobs is None else self.logprobs,
            "max_tokens": -1 if self.max_tokens is None else self.max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "penalty_last_n": self.penalty_last_n,
            "seed": self.seed,
            "logit_bias": self.logit_bias or None,
            "grammar": self.grammar,
            "grammar_triggers": list(self.grammar_triggers) or None,
            "stop": list(self.stop) or None,
            "ignore_eos": self.ignore_eos,
        }


@dataclass(frozen=True, slots=True)
class TokenEvent:
    token: int
    text: str
    logprobs: TokenLogprobs | None = None  # when GenerationParams.logprobs asked for them


@dataclass(frozen=True, slots=True)
class Logprob:
    """One token's log-probability under the model's distribution (OpenAI's logprobs entry)."""

    token: str  # its text (a piece that is part of a UTF-8 character shows U+FFFD)
    bytes: tuple[int, ...]  # its exact bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """A generated token's log-probability, and the most likely tokens at its position."""

    chosen: Logprob
    top: tuple[Logprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    drafted_tokens: int = 0
    accepted_tokens: int = 0


@dataclass(frozen=True, slots=True)
class FinishEvent:
    finish_reason: str  # "stop" | "length" | "abort"
    usage: Usage
    stop_word: str | None = None  # the request's stop string that ended it (Anthropic's stop_sequence)


GenerationEvent = TokenEvent | FinishEvent


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a loaded model can serve: the server refuses the rest before any work starts."""

    chat: bool = True
    completion: bool = True
    embedding: bool = True
    rerank: bool = True  # a model without a rank head reranks by embedding similarity
    tools: bool = True
    vision: bool = False


class Engine(Protocol):
    @property
    def n_ctx(self) -> int:
        """Context tokens one request can use (per sequence, not the whole cache)."""
        ...

    @property
    def n_vocab(self) -> int:
        """Vocabulary size: token ids in requests (logit_bias, token prompts) are checked against it."""
        ...

    @property
    def chat_template(self) -> str | None:
        """The model file's own Jinja chat template, None when it has none."""
        ...

    @property
    def bos_text(self) -> str:
        """The text of the begin-of-sequence token ("" without one), for templates that write it."""
        ...

    @property
    def eos_text(self) -> str:
        """The text of the end-of-sequence token ("" without one)."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def tokenize_prompt(self, text: str) -> list[int]: ...

    def generate(
        self, prompt: str | Sequence[int], params: GenerationParams, *, text: str | None = None
    ) -> AsyncIterator[GenerationEvent]: ...

    async def embed(
        self, inputs: Sequence[str | Sequence[int]], *, normalize: bool = True
    ) -> npt.NDArray[np.float32]: ...

    async def rerank(
        self, query: str, documents: Sequence[str]
    ) -> tuple[npt.NDArray[np.float32], int] | None:
        """The model's own relevance scores (a reranker's rank head) and the tokens evaluated for them, or
        None for a model without one."""
        ...

    def stats(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...
