"""POST chat/completions: template rendering, sampling, structured output, tools, reasoning, SSE."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dmr.engine import chat
from dmr.engine.protocol import FinishEvent, TokenEvent, Usage
from dmr.engine.tool_stream import TOOL_CLOSE, TOOL_OPEN, ToolCallStream, parse_tool_output
from dmr.errors import InvalidRequestError
from dmr.server import sse
from dmr.server.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar, tagged_json_grammar
from dmr.server.protocol import ChatCompletionRequest, decode, generation_params
from dmr.server.serving import (
    Exchange,
    collect,
    guarded,
    hold_model,
    new_id,
    start_generation,
    streaming_response,
    tokenize_prompt,
    usage_json,
)
from dmr.server.state import ServerState

ROLES = {"system", "developer", "user", "assistant", "tool"}


def validate_messages(messages: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not messages:
        err = InvalidRequestError("messages must be a non-empty list")
        err.param = "messages"  # type: ignore[attr-defined]
        raise err
    out = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ROLES:
            raise InvalidRequestError(f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}")
        if role == "developer":
            m = {**m, "role": "system"}
        calls = m.get("tool_calls")
        if calls is not None and (
            not isinstance(calls, list)
            or not all(
                isinstance(c, dict)
                and isinstance(c.get("function"), dict)
                and isinstance(c["function"].get("name"), str)
                for c in calls
            )
        ):
            raise InvalidRequestError(f"messages[{i}].tool_calls is malformed")
        chat.content_text(m.get("content"))  # type check now: 400, not a template error later
        out.append(m)
    return out


def response_grammar(req: ChatCompletionRequest) -> str | None:
    rf = req.response_format
    if rf is None:
        return req.grammar
    kind = rf.get("type")
    if kind in (None, "text"):
        return req.grammar
    if kind == "json_object":
        schema = rf.get("schema")
        return schema_to_grammar(schema) if isinstance(schema, dict) else JSON_OBJECT_GRAMMAR
    if kind == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("schema", {}), dict):
            raise InvalidRequestError("response_format.json_schema.schema must be an object")
        return schema_to_grammar(js.get("schema") or {"type": "object"})
    raise InvalidRequestError(f"unsupported response_format type {kind!r}")


def tool_grammar(mode: chat.ToolMode) -> tuple[str | None, tuple[str, ...]]:
    """The grammar a tool mode imposes, and the patterns that trigger it when it is lazy."""
    if mode.schema is not None:
        return schema_to_grammar(mode.schema), ()
    if mode.call_schema is not None:
        grammar = tagged_json_grammar(mode.call_schema, TOOL_OPEN, TOOL_CLOSE, repeat=mode.parallel)
        return grammar, ((re.escape(TOOL_OPEN),) if mode.lazy else ())
    return None, ()


async def create_chat_completion(state: ServerState, request: Request, body: bytes) -> Response:
    req: ChatCompletionRequest = decode(body, ChatCompletionRequest)
    messages = validate_messages(req.messages)
    if req.tools is not None and not isinstance(req.tools, list):
        raise InvalidRequestError("tools must be a list")
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    assert req.model is not None
    ex = await hold_model(state, request, body, req.model, "chat/completions")
    return await guarded(ex, lambda: _run(ex, req, messages, max_tokens))


async def _run(
    ex: Exchange, req: ChatCompletionRequest, messages: list[dict[str, Any]], max_tokens: int | None
) -> Response:
    engine = ex.runner.engine
    assert engine is not None
    tmpl = ex.state.template(ex.runner)
    mode = chat.tool_mode(tmpl, req.tools, req.tool_choice, parallel=req.parallel_tool_calls is not False)
    extra = dict(req.chat_template_kwargs or {})
    budget = ex.state.scheduler.runner_config(ex.model.id).reasoning_budget
    if budget == 0:
        extra.setdefault("enable_thinking", False)
    prompt = chat.render_prompt(tmpl, messages, mode, req.tools, extra)
    tokens = tokenize_prompt(engine, prompt)
    in_think = chat.starts_in_reasoning(prompt)
    if in_think and mode.call_schema is not None:
        # The template opened a think block: a grammar starting at <tool_call> would forbid the reasoning
        # (and leave the calls inside it), so it waits for the model to open a call even when one is required.
        mode = dataclasses.replace(mode, lazy=True)
    grammar, triggers = tool_grammar(mode)
    if grammar is None:
        grammar = response_grammar(req)
    params = generation_params(
        req,
        ex.state.scheduler.sampling_defaults(ex.model.id),
        max_tokens=max_tokens,
        grammar=grammar,
        grammar_triggers=triggers,
        vocab_size=engine.n_vocab,
    )
    stream = start_generation(engine, tokens, params, text=prompt)
    cid, created = new_id("chatcmpl"), int(time.time())
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return _stream(ex, req.model or "", cid, created, stream, mode, in_think, include_usage)
    pieces, finish = await collect(ex, stream)
    text = "".join(pieces)
    message = _message(text, mode, in_think)
    finish_reason = finish.finish_reason
    if message.get("tool_calls") and finish_reason == "stop":  # a call cut short stays "length"
        finish_reason = "tool_calls"
    out = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": req.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage_json(finish.usage),
        "system_fingerprint": "dmr",
    }
    ex.finish(200, out, None, finish.usage)
    return JSONResponse(out)


def _message(text: str, mode: chat.ToolMode, in_think: bool) -> dict[str, Any]:
    reasoning, content = chat.split_reasoning(text, in_think)
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if mode.kind != "none":
        parsed = parse_tool_output(content, mode.kind)
        msg["content"] = parsed.content
        if parsed.tool_calls:
            msg["tool_calls"] = parsed.tool_calls
    if reasoning:
        msg["reasoning_content"] = reasoning
    return msg


def _stream(
    ex: Exchange,
    model: str,
    cid: str,
    created: int,
    stream: AsyncIterator[Any],
    mode: chat.ToolMode,
    in_think: bool,
    include_usage: bool,
) -> Response:
    head = (
        f'data: {{"id":"{cid}","object":"chat.completion.chunk","created":{created},'
        f'"model":{json.dumps(model)},"system_fingerprint":"dmr","choices":[{{"index":0,"delta":{{'
    )
    tail = '},"logprobs":null,"finish_reason":null}]}\n\n'
    content_parts: list[str] = []
    reasoning_parts: list[str] = []
    result: dict[str, Any] = {"finish": None}
    # With tools, content goes through the tool-call parser, which streams calls as they are written.
    tools = ToolCallStream(mode.kind) if mode.kind != "none" else None

    def deltas(kind: str, text: str) -> list[str]:
        if kind == "reasoning":
            reasoning_parts.append(text)
            return [head + '"reasoning_content":' + json.dumps(text, ensure_ascii=False) + tail]
        if tools is None:
            content_parts.append(text)
            return [head + '"content":' + json.dumps(text, ensure_ascii=False) + tail]
        return [_tool_delta(head, tail, d) for d in tools.feed(text)]

    async def chunks() -> AsyncIterator[str]:
        yield head + '"role":"assistant","content":""' + tail
        splitter = chat.ReasoningSplitter(in_think)
        finish: FinishEvent | None = None
        async for ev in stream:
            if type(ev) is TokenEvent:
                if ex.t_first is None:
                    ex.first_token()
                for kind, text in splitter.feed(ev.text):
                    for chunk in deltas(kind, text):
                        yield chunk
            else:
                finish = ev
        assert finish is not None
        for kind, text in splitter.flush():
            for chunk in deltas(kind, text):
                yield chunk
        finish_reason = finish.finish_reason
        if tools is not None:
            for d in tools.finish():
                yield _tool_delta(head, tail, d)
            if tools.calls and finish_reason == "stop":  # a call cut short stays "length"
                finish_reason = "tool_calls"
        result["finish"] = finish
        last = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "dmr",
            "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}],
        }
        result["finish_reason"] = finish_reason
        yield sse.data(last)
        if include_usage:
            yield sse.data(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "dmr",
                    "choices": [],
                    "usage": usage_json(finish.usage),
                }
            )
        yield sse.DONE

    def summary() -> tuple[Any, Usage | None]:
        finish: FinishEvent | None = result["finish"]
        content = "".join(tools.content if tools is not None else content_parts)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning_parts:
            message["reasoning_content"] = "".join(reasoning_parts)
        if tools is not None and tools.calls:
            message["tool_calls"] = tools.tool_calls()
        doc = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": result.get("finish_reason")}],
            "usage": usage_json(finish.usage) if finish else None,
        }
        return doc, finish.usage if finish else None

    return streaming_response(ex, chunks(), stream, summary)


def _tool_delta(head: str, tail: str, delta: tuple[str, Any]) -> str:
    kind, value = delta
    return head + f'"{kind}":' + json.dumps(value, ensure_ascii=False) + tail
