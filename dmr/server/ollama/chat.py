"""POST /api/chat, /api/generate, /api/embed and /api/embeddings: Ollama's requests converted to the one
typed chat request and sent down the same serving path as every other dialect (serving_chat.start_chat,
the recorder, metrics, aborts), the typed events rendered as Ollama's NDJSON (renderer.py).

What is Ollama's own here:
- An empty `messages` / `prompt` loads the model (done_reason "load"); with `keep_alive: 0` it unloads it
  ("unload") without loading it first.
- `keep_alive` sets how long the model stays after this request (0: unload when it ends, negative:
  forever); a request without one gets the model's configured keep-alive (or the server's default), as an
  Ollama request without one gets Ollama's default.
- `options.num_ctx` becomes the model's `_configure` context size (DMR does the same), and only when it
  differs from what the model has: a reconfigure reloads the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dmr.chat.events import ChatEvent, Transcript
from dmr.chat.stream import text_events
from dmr.engine.protocol import Usage
from dmr.errors import InvalidRequestError, ModelNotFoundError
from dmr.models.store import Model
from dmr.scheduling.scheduler import parse_keep_alive
from dmr.server.ollama import wire
from dmr.server.ollama.renderer import (
    MEDIA_TYPE,
    Kind,
    OllamaChunks,
    Timing,
    document,
    error_line,
    status_document,
)
from dmr.server.protocol import ChatCompletionRequest, decode, generation_params
from dmr.server.serving import (
    Exchange,
    collect_events,
    guarded,
    hold_model,
    start_generation,
    streaming_response,
    until_disconnect,
)
from dmr.server.serving_chat import response_grammar, start_chat, validate_messages
from dmr.server.state import ServerState

#: The most inputs one /api/embed request may carry (as /v1/embeddings).
MAX_INPUTS = 2048


# --- the model: resolve, context size, keep-alive, load and unload ---------------------------------------


async def resolve(state: ServerState, name: str) -> Model:
    """The stored model, or Ollama's 404 `model 'x' not found`."""
    try:
        return await state.scheduler.resolve(name)
    except ModelNotFoundError:
        raise ModelNotFoundError(f"model '{name}' not found") from None


async def _apply_num_ctx(state: ServerState, name: str, model: Model, n_ctx: int) -> None:
    """options.num_ctx as a `_configure` of the context size, keeping the model's other settings; nothing
    when the model already has that context (a reconfigure reloads it)."""
    cfg = state.scheduler.runner_config(model.id)
    if cfg.context_size == n_ctx or state.scheduler.request_context(model) == n_ctx:
        return
    await state.scheduler.configure({**cfg.to_api(), "model": name, "context-size": n_ctx})


def default_keep_alive(state: ServerState, model: Model) -> float:
    configured = state.scheduler.runner_config(model.id).keep_alive
    return parse_keep_alive(configured) if configured is not None else state.scheduler.default_keep_alive


async def hold(
    state: ServerState,
    request: Request,
    body: bytes,
    name: str,
    endpoint: str,
    options: wire.Options | None,
    keep_alive: float | None,
    timing: Timing,
) -> Exchange:
    """Hold the model for one request (loading it if needed: the load duration), with this request's
    context size and keep-alive."""
    started = time.perf_counter_ns()
    model = await resolve(state, name)
    n_ctx = wire.num_ctx(options)
    if n_ctx is not None:
        await _apply_num_ctx(state, name, model, n_ctx)
    ex = await hold_model(state, request, body, name, endpoint, dialect="ollama")
    timing.load_ns = time.perf_counter_ns() - started
    # The runner's keep-alive is read when the last use releases it: what this request asked for (or the
    # model's default) is what applies after it, as in Ollama, where each request sets the expiry.
    # (Scheduler has no setter for a resident runner's keep-alive; its LoadSpec is the runner's own.)
    ex.runner.spec.keep_alive_s = keep_alive if keep_alive is not None else default_keep_alive(state, model)
    return ex


async def load_or_unload(
    state: ServerState,
    request: Request,
    body: bytes,
    req: wire.ChatRequest | wire.GenerateRequest,
    kind: Kind,
    endpoint: str,
) -> Response:
    """An empty chat or prompt: load the model, or with keep_alive 0 unload it (never loading it first)."""
    name = req.model or ""
    keep = wire.keep_alive_seconds(req.keep_alive)
    if keep == 0:
        model = await resolve(state, name)
        runner = state.scheduler.runner(model.id)
        if runner is not None and not await state.scheduler.unload_runner(runner):
            runner.spec.keep_alive_s = 0.0  # in use or loading: unloaded as soon as it is released
        doc = status_document(name, kind, "unload")
        state.record(request, model, name, body, doc, None, 200, "ollama")
        return JSONResponse(doc)
    ex = await hold(state, request, body, name, endpoint, req.options, keep, Timing())
    doc = status_document(name, kind, "load")
    ex.finish(200, doc, None, None)
    return JSONResponse(doc)


def _refuse_images(ex: Exchange) -> None:
    engine = ex.runner.engine
    if engine is None or not engine.capabilities.vision:
        raise InvalidRequestError(f"model '{ex.ref}' does not support images: it has no vision projector")


# --- chat and generate ---------------------------------------------------------------------------------


async def create_chat(state: ServerState, request: Request, body: bytes) -> Response:
    timing = Timing()
    req: wire.ChatRequest = decode(body, wire.ChatRequest)
    if not req.messages:
        return await load_or_unload(state, request, body, req, "chat", "api/chat")
    keep = wire.keep_alive_seconds(req.keep_alive)
    creq = wire.chat_request(req, wire.tools_of(req.tools))
    images = wire.has_images(req.messages)
    messages = validate_messages(wire.openai_messages(req.messages))
    max_tokens = wire.max_tokens(req.options)
    ex = await hold(state, request, body, req.model or "", "api/chat", req.options, keep, timing)

    async def run() -> Response:
        if images:
            _refuse_images(ex)
        timing.gen_ns = time.perf_counter_ns()
        started = await start_chat(ex, creq, messages, max_tokens)
        return await _answer(ex, creq, "chat", started.events, started.stream, timing)

    return await guarded(ex, run)


async def create_generate(state: ServerState, request: Request, body: bytes) -> Response:
    timing = Timing()
    req: wire.GenerateRequest = decode(body, wire.GenerateRequest)
    name = req.model or ""
    if req.suffix:
        raise InvalidRequestError(
            f"model '{name}' does not support insert: dmr has no fill-in-the-middle prompt (suffix) for it"
        )
    if req.template:
        raise InvalidRequestError(
            "template overrides are not supported: dmr renders the model's own (Jinja) chat template; "
            'send "raw": true with a prompt you formatted yourself instead'
        )
    if not req.prompt and not req.images:
        return await load_or_unload(state, request, body, req, "generate", "api/generate")
    keep = wire.keep_alive_seconds(req.keep_alive)
    creq = wire.chat_request(req)
    max_tokens = wire.max_tokens(req.options)
    ex = await hold(state, request, body, name, "api/generate", req.options, keep, timing)

    async def run() -> Response:
        if req.images:
            _refuse_images(ex)
        timing.gen_ns = time.perf_counter_ns()
        if not req.raw:
            messages = [{"role": "system", "content": req.system}] if req.system else []
            messages.append({"role": "user", "content": req.prompt or ""})
            started = await start_chat(ex, creq, messages, max_tokens)
            return await _answer(ex, creq, "generate", started.events, started.stream, timing)
        tokens, params = await asyncio.to_thread(_prepare_raw, ex, req, creq, max_tokens)
        engine = ex.runner.engine
        assert engine is not None
        stream = start_generation(engine, tokens, params, text=None if req.context else req.prompt)

        def context(answer: str) -> list[int]:  # Ollama's deprecated continuation: prompt + answer tokens
            return tokens + engine.tokenize(answer, add_special=False, parse_special=False)

        events = text_events(stream, ex.first_token)
        return await _answer(ex, creq, "generate", events, stream, timing, context)

    return await guarded(ex, run)


def _prepare_raw(
    ex: Exchange, req: wire.GenerateRequest, creq: ChatCompletionRequest, max_tokens: int | None
) -> tuple[list[int], Any]:
    """A raw prompt's tokens (after the `context` of an earlier answer, when sent) and sampling."""
    engine = ex.runner.engine
    assert engine is not None
    if req.context:
        n_vocab = engine.n_vocab
        if any(t < 0 or t >= n_vocab for t in req.context):
            raise InvalidRequestError(f"context token ids must be in [0, {n_vocab})")
        tokens = [*req.context, *engine.tokenize(req.prompt or "", add_special=False)]
    else:
        tokens = engine.tokenize_prompt(req.prompt or "")
    params = generation_params(
        creq,
        ex.state.scheduler.sampling_defaults(ex.model.id),
        max_tokens=max_tokens,
        grammar=response_grammar(creq),
        vocab_size=engine.n_vocab,
    )
    return tokens, params


async def _answer(
    ex: Exchange,
    creq: ChatCompletionRequest,
    kind: Kind,
    events: AsyncIterator[ChatEvent],
    stream: AsyncIterator[Any],
    timing: Timing,
    context: Callable[[str], list[int]] | None = None,
) -> Response:
    model = creq.model or ""
    if creq.stream:
        return _stream(ex, OllamaChunks(model, kind, timing, lambda: ex.t_first, context), events, stream)
    (transcript,) = await collect_events(ex, [events], [stream])
    doc = document(model, kind, transcript, timing, ex.t_first, context)
    ex.finish(200, doc, None, transcript.usage)
    return JSONResponse(doc)


def _stream(
    ex: Exchange, renderer: OllamaChunks, events: AsyncIterator[ChatEvent], stream: AsyncIterator[Any]
) -> Response:
    transcript = Transcript()

    async def chunks() -> AsyncIterator[str]:
        async for event in events:
            transcript.observe(event)
            for chunk in renderer.render(event):
                yield chunk

    def summary() -> tuple[Any, Usage | None, Exception | None]:
        doc = document(renderer.model, renderer.kind, transcript, renderer.timing, ex.t_first)
        return doc, transcript.usage, transcript.error

    return streaming_response(ex, chunks(), stream, summary, media_type=MEDIA_TYPE, error_chunk=error_line)


# --- embeddings ----------------------------------------------------------------------------------------


async def create_embed(state: ServerState, request: Request, body: bytes) -> Response:
    timing = Timing()
    req: wire.EmbedRequest = decode(body, wire.EmbedRequest)
    if isinstance(req.input, str):
        inputs = [req.input] if req.input else []
    else:
        inputs = list(req.input or [])
        if any(not s for s in inputs):
            raise InvalidRequestError("input must not contain empty strings")
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequestError(f"at most {MAX_INPUTS} inputs per request")
    if req.dimensions is not None and req.dimensions < 1:
        raise InvalidRequestError("dimensions must be a positive integer")
    keep = wire.keep_alive_seconds(req.keep_alive)
    name = req.model or ""
    ex = await hold(state, request, body, name, "api/embed", req.options, keep, timing)

    async def run() -> Response:
        vectors, n_tokens = await _vectors(ex, inputs, truncate=req.truncate, normalize=True)
        if req.dimensions is not None and vectors.size:
            if req.dimensions > vectors.shape[1]:
                raise InvalidRequestError(
                    f"dimensions must be at most {vectors.shape[1]} for this model, got {req.dimensions}"
                )
            # Matryoshka truncation, as Ollama does it: the first `dimensions` values, normalised again
            vectors = vectors[:, : req.dimensions]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
        out = {
            "model": name,
            "embeddings": vectors.tolist(),
            **_durations(timing, n_tokens),
        }
        ex.finish(200, {**out, "embeddings": f"<{len(inputs)} embeddings>"}, None, None)
        return JSONResponse(out)

    return await guarded(ex, run)


async def create_embeddings(state: ServerState, request: Request, body: bytes) -> Response:
    """The legacy route: one prompt, one vector, not normalised (as Ollama's /api/embeddings)."""
    timing = Timing()
    req: wire.EmbeddingsRequest = decode(body, wire.EmbeddingsRequest)
    keep = wire.keep_alive_seconds(req.keep_alive)
    ex = await hold(state, request, body, req.model or "", "api/embeddings", req.options, keep, timing)

    async def run() -> Response:
        inputs = [req.prompt] if req.prompt else []
        vectors, _ = await _vectors(ex, inputs, truncate=True, normalize=False)
        out = {"embedding": vectors[0].tolist() if inputs else []}
        ex.finish(200, {"embedding": f"<{len(out['embedding'])} values>"}, None, None)
        return JSONResponse(out)

    return await guarded(ex, run)


def _durations(timing: Timing, n_tokens: int) -> dict[str, int]:
    return {
        "total_duration": time.perf_counter_ns() - timing.start_ns,
        "load_duration": timing.load_ns,
        "prompt_eval_count": n_tokens,
    }


async def _vectors(
    ex: Exchange, inputs: list[str], *, truncate: bool, normalize: bool
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], int]:
    """The inputs' embeddings and their token count; an input longer than the context is cut to it when
    `truncate` (Ollama's default), else refused."""
    engine = ex.runner.engine
    assert engine is not None
    if not inputs:
        return np.zeros((0, 0), np.float32), 0

    def tokens() -> list[list[int]]:
        return [engine.tokenize(s) for s in inputs]

    token_lists = await asyncio.to_thread(tokens)
    n_ctx = engine.n_ctx
    items: list[str | list[int]] = []
    for text, toks in zip(inputs, token_lists, strict=True):
        if len(toks) <= n_ctx:
            items.append(text)
        elif truncate:
            items.append(toks[:n_ctx])
        else:
            raise InvalidRequestError(
                f"the input has {len(toks)} tokens, more than the context length {n_ctx}; "
                "send truncate: true to cut it"
            )
    vectors = await until_disconnect(ex.request, engine.embed(items, normalize=normalize))
    return vectors, sum(min(len(t), n_ctx) for t in token_lists)
