"""POST completions: raw prompt (text or token ids) -> text, streamed or not."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dmr.engine.protocol import FinishEvent, TokenEvent, Usage
from dmr.errors import InvalidRequestError
from dmr.server import sse
from dmr.server.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar
from dmr.server.protocol import CompletionRequest, decode, generation_params, text_inputs
from dmr.server.serving import (
    Exchange,
    collect_many,
    guarded,
    hold_model,
    new_id,
    start_generation,
    streaming_response,
    tokenize_prompt,
    usage_json,
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
    streams = [start_generation(engine, toks, params) for toks in token_lists]
    cid, created = new_id("cmpl"), int(time.time())
    echo = [(p if isinstance(p, str) else engine.detokenize(p)) if req.echo else "" for p in prompts]
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return _stream(ex, req.model or "", cid, created, streams[0], echo[0], include_usage)
    results = await collect_many(ex, streams)
    choices = []
    total = Usage(0, 0, 0)
    for i, (pieces, finish) in enumerate(results):
        choices.append(
            {
                "index": i,
                "text": echo[i] + "".join(pieces),
                "finish_reason": finish.finish_reason,
                "logprobs": None,
            }
        )
        u = finish.usage
        total = Usage(
            total.prompt_tokens + u.prompt_tokens,
            total.cached_tokens + u.cached_tokens,
            total.completion_tokens + u.completion_tokens,
            total.drafted_tokens + u.drafted_tokens,
            total.accepted_tokens + u.accepted_tokens,
        )
    out = {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": req.model,
        "choices": choices,
        "usage": usage_json(total),
        "system_fingerprint": "dmr",
    }
    ex.finish(200, out, None, total)
    return JSONResponse(out)


def _stream(
    ex: Exchange,
    model: str,
    cid: str,
    created: int,
    stream: AsyncIterator[Any],
    echo: str,
    include_usage: bool,
) -> Response:
    head = (
        f'data: {{"id":"{cid}","object":"text_completion","created":{created},"model":{json.dumps(model)},'
        '"system_fingerprint":"dmr","choices":[{"index":0,"text":'
    )
    tail = ',"logprobs":null,"finish_reason":null}]}\n\n'
    parts: list[str] = []
    result: dict[str, Any] = {}

    async def chunks() -> AsyncIterator[str]:
        if echo:
            parts.append(echo)
            yield head + json.dumps(echo, ensure_ascii=False) + tail
        finish: FinishEvent | None = None
        async for ev in stream:
            if type(ev) is TokenEvent:
                if ex.t_first is None:
                    ex.first_token()
                parts.append(ev.text)
                yield head + json.dumps(ev.text, ensure_ascii=False) + tail
            else:
                finish = ev
        assert finish is not None
        result["finish"] = finish
        yield sse.data(
            {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": "dmr",
                "choices": [
                    {"index": 0, "text": "", "logprobs": None, "finish_reason": finish.finish_reason}
                ],
            }
        )
        if include_usage:
            yield sse.data(
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage_json(finish.usage),
                }
            )
        yield sse.DONE

    def summary() -> tuple[Any, Usage | None]:
        finish: FinishEvent | None = result.get("finish")
        doc = {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "text": "".join(parts),
                    "finish_reason": finish.finish_reason if finish else None,
                }
            ],
            "usage": usage_json(finish.usage) if finish else None,
        }
        return doc, finish.usage if finish else None

    return streaming_response(ex, chunks(), stream, summary)
