"""asyncio facade over dmr._native.Engine: the only module of the package that imports dmr._native.

The C++ decode thread pushes events into a queue and writes an eventfd; the event loop watches that fd
with add_reader and, when it fires, drains every event in one call and routes each to its request's stream.
Per token the loop does one deque append and at most one future wake-up, so a busy batch costs the loop
microseconds, not a core (the Python peer's problem on small machines).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from dmr import _native as native
from dmr import config, errors
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

_T = TypeVar("_T")

#: A stream whose consumer lags this many events behind is paused in the decode loop ...
BACKPRESSURE_HIGH = 256
#: ... and resumed once it has caught up to this many.
BACKPRESSURE_LOW = 32

_EVENT_TOKEN = native.EVENT_TOKEN
_EVENT_DONE = native.EVENT_DONE
_FINISH = native.FINISH_REASONS


_BACKEND_NAMES = {"cuda": "CUDA", "rocm": "ROCm", "vulkan": "Vulkan", "metal": "Metal", "opencl": "OpenCL"}


def cpu_fallback_notice(backend: str, devices: Sequence[dict[str, Any]]) -> str | None:
    """One line when a GPU build finds no GPU device (no driver, no such GPU, a GPU ggml refuses): models
    then run on the CPU, which the user should hear about rather than guess from the speed."""
    if backend == "cpu" or any(d.get("type") in ("gpu", "igpu") for d in devices):
        return None
    name = _BACKEND_NAMES.get(backend, backend)
    return f"built for {name}, but no {name} device was found: running on the CPU"


def build_info() -> dict[str, Any]:
    """What this installation runs on: the llama.cpp source it was built from, ggml's version, the compiled
    backend, the devices ggml sees, whether dmr's own CPU kernels are in use (csrc/kernels) and, for a GPU
    build without a GPU, the CPU-fallback notice (for /version, `dmr version`, `dmr status` and the server
    log)."""
    devices = [
        {k: d.get(k) for k in ("name", "description", "type", "memory_total")} for d in native.devices()
    ]
    info: dict[str, Any] = {
        "llama.cpp": native.LLAMA_CPP_SOURCE,
        "ggml": f"{native.GGML_VERSION} ({native.GGML_COMMIT})",
        "backend": native.BACKEND,
        "devices": devices,
        "cpu_kernels": native.cpu_kernels(),
    }
    notice = cpu_fallback_notice(native.BACKEND, devices)
    if notice:
        info["notice"] = notice
    return info


@dataclass(frozen=True)
class EngineConfig:
    """How a model is loaded and served. Defaults follow dmr.config."""

    n_ctx: int = config.DEFAULT_CONTEXT_SIZE
    n_slots: int = 4
    n_batch: int = config.DEFAULT_N_BATCH
    n_ubatch: int = config.DEFAULT_N_UBATCH
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_gpu_layers: int | None = None  # None: all layers on GPU builds with a device, else none
    flash_attn: str | None = None
    prefill_chunk: int = 512
    prefill_group: int = config.PREFILL_GROUP
    speculative: str | None = None  # None | "ngram" | "draft"
    spec_n_max: int = 8
    spec_min_acceptance: float = 0.0
    spec_force: bool = False  # keep a draft model the load-time calibration finds too slow to pay
    draft_model: str | None = None
    embedding_n_ctx: int = 2048
    kv_unified: bool = config.KV_UNIFIED
    step_trace: str = config.STEP_TRACE  # a file for one line per step ("" = off); one model at a time


class _PromptCache:
    """Remembers the exact tokens of recent conversations, keyed by their text.

    A chat client sends the whole conversation again each turn. Re-tokenizing the previous answer's text
    may not give the tokens the model generated (BPE merges across a boundary differently), and then the
    engine's token-prefix match stops early and the answer is evaluated again. Instead, the longest
    remembered text that prefixes the new prompt contributes its exact tokens, and only the rest of the text
    is tokenized. The model sees a valid tokenization of the same text either way.
    """

    def __init__(self, capacity: int = 64) -> None:
        self._entries: dict[str, list[int]] = {}  # insertion order = LRU order
        self._capacity = capacity
        self._lock = (
            threading.Lock()
        )  # requests tokenize in worker threads; answers are remembered on the loop

    def tokenize(self, model: Any, text: str) -> list[int]:
        best = ""
        with self._lock:
            for known in self._entries:
                if len(known) > len(best) and text.startswith(known):
                    best = known
            if best:
                cached = self._entries.pop(best)
                self._entries[best] = cached  # most recently used
        if not best:
            tokens: list[int] = model.tokenize(text, add_special=True, parse_special=True)
            return tokens
        rest = text[len(best) :]
        return cached + (model.tokenize(rest, add_special=False, parse_special=True) if rest else [])

    def remember(self, text: str, tokens: list[int]) -> None:
        with self._lock:
            self._entries.pop(text, None)
            self._entries[text] = tokens
            while len(self._entries) > self._capacity:
                del self._entries[next(iter(self._entries))]


class _Stream:
    """One request's events, consumed by `async for`. Closing it early aborts the request."""

    __slots__ = ("_engine", "_events", "_finished", "_id", "_paused", "_pieces", "_prompt", "_waiter")

    def __init__(
        self, engine: LlamaEngine, request_id: int, prompt: tuple[str, list[int]] | None = None
    ) -> None:
        self._engine = engine
        self._id = request_id
        self._events: deque[native.EngineEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._finished = False  # a Done/Error event was queued
        self._paused = False
        # text prompts: (text, tokens) and the generated (token, text) pieces, for the prompt cache
        self._prompt = prompt
        self._pieces: list[tuple[int, str]] | None = [] if prompt is not None else None

    def _push(self, event: native.EngineEvent) -> None:
        self._events.append(event)
        if event.kind != _EVENT_TOKEN:
            self._finished = True
        elif not self._paused and len(self._events) > BACKPRESSURE_HIGH:
            self._paused = True
            self._engine._native.pause(self._id, True)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> GenerationEvent:
        while not self._events:
            if self._finished:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        ev = self._events.popleft()
        if self._paused and len(self._events) <= BACKPRESSURE_LOW:
            self._paused = False
            self._engine._native.pause(self._id, False)
        kind = ev.kind
        if kind == _EVENT_TOKEN:
            if self._pieces is not None:
                self._pieces.append((ev.token, ev.text))
            if ev.logprob is None:
                return TokenEvent(ev.token, ev.text)
            return TokenEvent(
                ev.token, ev.text, self._engine._logprobs(ev.token, ev.logprob, ev.top_logprobs)
            )
        if kind == _EVENT_DONE:
            finish = _FINISH.get(ev.finish, "stop")
            if self._pieces is not None and self._prompt is not None:
                self._engine._remember(self._prompt, self._pieces, finish)
            return FinishEvent(
                finish,
                Usage(ev.n_prompt, ev.n_cached, ev.n_generated, ev.n_drafted, ev.n_accepted),
                ev.text or None,  # a Done event's text is the stop string that ended the request
            )
        raise native.error_from_code(ev.error_code, ev.error_message)

    async def aclose(self) -> None:
        """Stops consuming: aborts the request if it is still running."""
        if not self._finished:
            self._engine._abort(self._id)
        self._finished = True
        self._events.clear()

    def __del__(self) -> None:
        if not self._finished:
            self._engine._abort(self._id)


class LlamaEngine:
    """A loaded GGUF served by the native continuous-batching engine (see dmr.engine.protocol)."""

    def __init__(self, model: Any, engine: Any, cfg: EngineConfig, draft: Any = None) -> None:
        self._model = model
        self._max_piece_bytes: int | None = None  # the vocabulary's longest token, measured when first needed
        self._draft = draft
        self._native = engine
        self.config = cfg
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._embedder: Any = None
        self._embed_lock = threading.Lock()
        # One thread computes every embedding of this model: each thread that runs llama.cpp gets its own
        # OpenMP team, and with more teams' threads than cores libgomp sleeps at barriers instead of spinning,
        # which slows the decode thread too (csrc/engine.cpp). The default executor would add a team per
        # worker thread that ever embedded.
        self._embed_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dmr-embed")
        self._closed = False
        self._prompt_cache = _PromptCache()

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def load_sync(cls, path: str | Path, cfg: EngineConfig | None = None) -> LlamaEngine:
        cfg = cfg or EngineConfig()
        model = native.Model.load(path, n_gpu_layers=cfg.n_gpu_layers)
        draft = native.Model.load(cfg.draft_model, n_gpu_layers=cfg.n_gpu_layers) if cfg.draft_model else None
        engine = native.Engine.create(
            model,
            n_ctx=cfg.n_ctx,
            n_slots=cfg.n_slots,
            n_batch=cfg.n_batch,
            n_ubatch=cfg.n_ubatch,
            n_threads=cfg.n_threads,
            n_threads_batch=cfg.n_threads_batch,
            flash_attn=cfg.flash_attn,
            prefill_chunk=cfg.prefill_chunk,
            prefill_group=cfg.prefill_group,
            speculative=cfg.speculative,
            spec_n_max=cfg.spec_n_max,
            spec_min_acceptance=cfg.spec_min_acceptance,
            spec_force=cfg.spec_force,
            draft_model=draft,
            kv_unified=cfg.kv_unified,
            step_trace=cfg.step_trace or None,
        )
        return cls(model, engine, cfg, draft)

    @classmethod
    async def load(cls, path: str | Path, cfg: EngineConfig | None = None) -> LlamaEngine:
        """Loads off the event loop (loading takes from milliseconds to minutes)."""
        return await asyncio.to_thread(cls.load_sync, path, cfg)

    # --- facts ----------------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        return self._model

    @property
    def n_ctx(self) -> int:
        return int(self._native.n_ctx_seq)

    @property
    def n_vocab(self) -> int:
        return int(self._model.n_vocab)

    @property
    def chat_template(self) -> str | None:
        template: str | None = self._model.chat_template
        return template or None

    @property
    def bos_text(self) -> str:
        return self._special_text("bos")

    @property
    def eos_text(self) -> str:
        return self._special_text("eos")

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def _special_text(self, name: str) -> str:
        token = self._model.special_tokens.get(name, -1)
        if token is None or token < 0:
            return ""
        try:
            return bytes(self._model.token_to_piece(token, special=True)).decode("utf-8", "replace")
        except Exception:  # a token id the vocabulary cannot render: no text rather than no template
            return ""

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        tokens: list[int] = self._model.tokenize(text, add_special=add_special, parse_special=parse_special)
        return tokens

    def detokenize(self, tokens: Sequence[int]) -> str:
        text: str = self._model.detokenize(list(tokens))
        return text

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._native.stats()
        stats["streams"] = len(self._streams)
        return stats

    # --- generation -----------------------------------------------------------------------------------
    def tokenize_prompt(self, text: str) -> list[int]:
        """Tokens for a rendered prompt (special tokens parsed), reusing the exact tokens of earlier turns
        of the same conversation (see _PromptCache). A template that writes BOS itself gets no second one."""
        self._check_prompt_length(text)
        tokens = self._prompt_cache.tokenize(self._model, text)
        bos = self._model.special_tokens["bos"]
        if bos >= 0 and len(tokens) >= 2 and tokens[0] == tokens[1] == bos:
            del tokens[0]
        return tokens

    def _logprobs(self, token: int, logprob: float, top: list[tuple[int, float]]) -> TokenLogprobs:
        def entry(t: int, lp: float) -> Logprob:
            piece = bytes(self._model.token_to_piece(t, special=True))
            return Logprob(piece.decode("utf-8", "replace"), tuple(piece), lp)

        return TokenLogprobs(entry(token, logprob), tuple(entry(t, lp) for t, lp in top))

    def _check_prompt_length(self, text: str) -> None:
        """Refuses a prompt that cannot fit the context whatever its tokens, before tokenizing it: no token
        is longer than the vocabulary's longest piece. Tokenizing 100k short chat messages (2.3 MB) took
        llama.cpp 163 s for a prompt that was never going to fit."""
        if len(text) <= self.n_ctx * 8:  # typical text has 3-5 bytes per token: no need to look further
            return
        if self._max_piece_bytes is None:
            self._max_piece_bytes = max(
                (len(self._model.token_to_piece(t, special=True)) for t in range(self._model.n_vocab)),
                default=1,
            )
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.n_ctx * max(self._max_piece_bytes, 1):
            raise errors.ContextFullError(
                f"the prompt has {size} bytes, more than the context of {self.n_ctx} tokens can hold "
                f"(at most {self._max_piece_bytes} bytes per token)"
            )

    def generate(
        self, prompt: str | Sequence[int], params: GenerationParams, *, text: str | None = None
    ) -> AsyncIterator[GenerationEvent]:
        """Submits at once (errors known now raise here) and returns the request's event stream.

        A text prompt goes through tokenize_prompt. For token prompts, `text` (the text they were made from
        by tokenize_prompt) lets the answer's exact tokens be reused by the conversation's next turn."""
        if self._closed:
            raise errors.EngineError("the engine is closed")
        self._attach(asyncio.get_running_loop())
        request_id = next(self._ids)
        if isinstance(prompt, str):
            text, prompt = prompt, self.tokenize_prompt(prompt)
        tokens = list(prompt)
        stream = _Stream(self, request_id, (text, tokens) if text is not None else None)
        self._streams[request_id] = stream
        try:
            self._native.submit(request_id, tokens, speculative=params.speculative, **params.native_kwargs())
        except BaseException:
            del self._streams[request_id]
            stream._finished = True
            raise
        return stream

    def _remember(self, prompt: tuple[str, list[int]], pieces: list[tuple[int, str]], finish: str) -> None:
        # Only when the streamed text is exactly the generated tokens' text: a stop string is cut from
        # the text but not from the tokens. A final end-of-generation token has no text and is dropped.
        if finish == "abort" or (finish == "stop" and pieces and not self._model.is_eog(pieces[-1][0])):
            return
        if pieces and self._model.is_eog(pieces[-1][0]):
            pieces = pieces[:-1]
        text, tokens = prompt
        self._prompt_cache.remember(text + "".join(p for _, p in pieces), tokens + [t for t, _ in pieces])

    def _abort(self, request_id: int) -> None:
        if self._streams.pop(request_id, None) is not None and not self._closed:
            self._native.abort(request_id)

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._native.fileno())
        loop.add_reader(self._native.fileno(), self._on_readable)
        self._loop = loop

    def _on_readable(self) -> None:
        streams = self._streams
        for ev in self._native.drain():
            stream = streams.get(ev.request_id)
            if stream is None:
                continue  # aborted by its consumer
            stream._push(ev)
            if ev.kind != _EVENT_TOKEN:
                del streams[ev.request_id]

    # --- embeddings -----------------------------------------------------------------------------------
    def _embedder_sync(self) -> Any:
        """The model's embedding context, made on first use (with the model's own pooling)."""
        if self._embedder is None:
            n_ctx = min(self.config.embedding_n_ctx, self._model.n_ctx_train)
            self._embedder = native.Embedder.create(
                self._model,
                n_ctx=n_ctx,
                n_threads=self.config.n_threads,
                n_threads_batch=self.config.n_threads_batch,
            )
        return self._embedder

    def _embed_sync(
        self, inputs: list[str | list[int]], normalize: bool, cancelled: threading.Event
    ) -> npt.NDArray[np.float32]:
        with self._embed_lock:
            if cancelled.is_set():
                raise errors.AbortedError("the embedding request was cancelled")
            embedder = self._embedder_sync()
            if embedder.is_rank:
                raise errors.InvalidRequestError(
                    "this model is a reranker (its pooling is 'rank'): it gives relevance scores through "
                    "/rerank, not embeddings"
                )
            out: npt.NDArray[np.float32] = embedder.embed(inputs, normalize=normalize)
            return out

    def _rerank_sync(
        self, query: str, documents: list[str], cancelled: threading.Event
    ) -> tuple[npt.NDArray[np.float32], int] | None:
        with self._embed_lock:
            if cancelled.is_set():
                raise errors.AbortedError("the rerank request was cancelled")
            embedder = self._embedder_sync()
            if not embedder.is_rank:
                return None
            pairs = [embedder.rerank_tokens(query, doc) for doc in documents]
            scores: npt.NDArray[np.float32] = embedder.embed(pairs, normalize=False)[:, 0]
            return scores, sum(len(p) for p in pairs)

    async def embed(
        self, inputs: Sequence[str | Sequence[int]], *, normalize: bool = True
    ) -> npt.NDArray[np.float32]:
        items = [x if isinstance(x, str) else list(x) for x in inputs]
        cancelled = threading.Event()
        return await self._on_embed_thread(cancelled, self._embed_sync, items, normalize, cancelled)

    async def rerank(
        self, query: str, documents: Sequence[str]
    ) -> tuple[npt.NDArray[np.float32], int] | None:
        cancelled = threading.Event()
        return await self._on_embed_thread(cancelled, self._rerank_sync, query, list(documents), cancelled)

    async def _on_embed_thread(self, cancelled: threading.Event, fn: Callable[..., _T], *args: Any) -> _T:
        """Runs `fn` on the embedding thread; when the caller is cancelled (its client left) the work stops
        too: not started yet, it never starts; running, the native loop is aborted between batches. An
        abandoned batch used to run on for over 10 minutes."""
        future = asyncio.get_running_loop().run_in_executor(self._embed_thread, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            if self._embedder is not None:
                self._embedder.abort()
            raise

    # --- lifecycle ------------------------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._native.fileno())
        await asyncio.to_thread(self._native.close)
        self._embed_thread.shutdown(wait=False)
        for stream in self._streams.values():
            stream._push(native.EngineEvent.error(stream._id, 7, "the engine was closed"))
        self._streams.clear()
