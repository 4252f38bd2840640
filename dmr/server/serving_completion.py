"""POST completions: raw prompt (text or token ids) -> text events, rendered streamed or not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dmr.chat.events import ChatEvent, Transcript
from dmr.chat.stream import text_events
from dmr.engine.protocol import GenerationParams, Usage
from dmr.errors import InvalidRequestError
from dmr.server.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar
from dmr.server.openai_renderer import CompletionChunks, text_completion, total_usage
from dmr.server.protocol import CompletionRequest, decode, generation_params, text_inputs
from dmr.server.serving import (
    Exchange,
    collect_events,
    guarded,
    hold_model,
    new_id,
    start_generation,
    streaming_response,
    tokenize_prompt,
)
from dmr.server.state import ServerState

#: Completions without max_tokens stop here (OpenAI's legacy default is 16; llama-server's is unlimited).
DEFAULT_MAX_TOKENS = 256


def prompts_of(prompt: Any) -> list[str | list[int]]:
    return text_inputs(prompt, "prompt")


async def create_completion(state: ServerState, request: Request, body: bytes) -> Response:
    req: CompletionRequest = decode(body, CompletionRequest)
    prompts = prompts_of(req.prompt)
    if req.stream and len(prompts) > 1:
        raise InvalidRequestError("streaming supports a single prompt")
    if len(prompts) > 16:
        raise InvalidRequestError("at most 16 prompts per request")
    assert req.model is not None
    ex = await hold_model(state, request, body, req.model, "completions")
    return await guarded(ex, lambda: _run(ex, req, prompts))


async def _run(ex: Exchange, req: CompletionRequest, prompts: list[str | list[int]]) -> Response:
    engine = ex.runner.engine
    assert engine is not None
    # grammar building and tokenizing grow with what the client sent: off the event loop
    params, token_lists = await asyncio.to_thread(_prepare, ex, req, prompts)
    streams = [start_generation(engine, toks, params) for toks in token_lists]
    cid, created, model = new_id("cmpl"), int(time.time()), req.model or ""
    echo = [(p if isinstance(p, str) else engine.detokenize(p)) if req.echo else "" for p in prompts]
    events = [text_events(s, ex.first_token) for s in streams]
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        renderer = CompletionChunks(cid, created, model, include_usage)
        return _stream(ex, renderer, events[0], streams[0], echo[0])
    transcripts = await collect_events(ex, events, streams)
    out = text_completion(cid, created, model, list(zip(echo, transcripts, strict=True)))
    ex.finish(200, out, None, total_usage(transcripts))
    return JSONResponse(out)


def _prepare(
    ex: Exchange, req: CompletionRequest, prompts: list[str | list[int]]
) -> tuple[GenerationParams, list[list[int]]]:
    engine = ex.runner.engine
    assert engine is not None
    n_vocab = engine.n_vocab
    grammar = req.grammar
    rf = req.response_format or {}
    if rf.get("type") == "json_object":
        grammar = JSON_OBJECT_GRAMMAR
    elif rf.get("type") == "json_schema":
        grammar = schema_to_grammar((rf.get("json_schema") or {}).get("schema") or {"type": "object"})
    max_tokens = req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS
    params = generation_params(
        req,
        ex.state.scheduler.sampling_defaults(ex.model.id),
        max_tokens=max_tokens,
        grammar=grammar,
        vocab_size=n_vocab,
    )
    token_lists: list[list[int]] = []
    for p in prompts:
        if isinstance(p, str):
            token_lists.append(tokenize_prompt(engine, p))
        else:
            if any(t < 0 or t >= n_vocab for t in p):
                raise InvalidRequestError(f"prompt token ids must be in [0, {n_vocab})")
            token_lists.append(list(p))
    return params, token_lists


def _stream(
    ex: Exchange,
    renderer: CompletionChunks,
    events: AsyncIterator[ChatEvent],
    stream: AsyncIterator[Any],
    echo: str,
) -> Response:
    transcript = Transcript()

    async def chunks() -> AsyncIterator[str]:
        if echo:
            yield renderer.text(echo)
        async for event in events:
            transcript.observe(event)
            for chunk in renderer.render(event):
                yield chunk

    def summary() -> tuple[Any, Usage | None, Exception | None]:
        doc = text_completion(renderer.cid, renderer.created, renderer.model, [(echo, transcript)])
        return doc, transcript.usage, transcript.error

    return streaming_response(ex, chunks(), stream, summary)
