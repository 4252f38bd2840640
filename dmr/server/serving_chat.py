"""POST chat/completions: template rendering, sampling, structured output and tools build the generation;
its typed events (dmr.chat) are rendered by the OpenAI renderer, streamed or as one document."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dmr.chat.events import ChatEvent, Transcript
from dmr.chat.stream import chat_events
from dmr.engine import chat
from dmr.engine.protocol import GenerationParams, Usage
from dmr.engine.tool_stream import TOOL_CLOSE, TOOL_OPEN
from dmr.errors import InvalidRequestError
from dmr.server.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar, tagged_json_grammar
from dmr.server.openai_renderer import ChatChunks, chat_completion
from dmr.server.protocol import ChatCompletionRequest, decode, generation_params
from dmr.server.reasoning_budget import budgeted_events
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


@dataclasses.dataclass
class ChatRun:
    """A started chat generation, whichever dialect asked: its typed events and the engine stream under
    them (closed when the response ends), and the prompt's token count."""

    events: AsyncIterator[ChatEvent]
    stream: AsyncIterator[Any]
    n_prompt: int


async def start_chat(
    ex: Exchange, req: ChatCompletionRequest, messages: list[dict[str, Any]], max_tokens: int | None
) -> ChatRun:
    """Render, tokenize and start generating `req` on the model `ex` holds: the one typed path every chat
    dialect (OpenAI, Ollama, Anthropic, Responses) goes down. Errors known before the first token raise."""
    engine = ex.runner.engine
    assert engine is not None
    # Rendering, tokenizing and building the grammar take time proportional to what the client sent (and
    # to the template): done in a worker thread, so that every other client's requests go on meanwhile.
    prompt, tokens, mode, in_think, params = await asyncio.to_thread(_prepare, ex, req, messages, max_tokens)
    stream = start_generation(engine, tokens, params, text=prompt)
    budget = reasoning_budget(ex, req)
    if budget > 0:  # reasoning cut after `budget` tokens, the answer forced to follow
        events = budgeted_events(
            engine,
            prompt,
            len(tokens),
            stream,
            params,
            budget=budget,
            tool_kind=mode.kind,
            in_think=in_think,
            on_token=ex.first_token,
        )
    else:
        events = chat_events(stream, tool_kind=mode.kind, in_think=in_think, on_token=ex.first_token)
    return ChatRun(events, stream, len(tokens))


def reasoning_budget(ex: Exchange, req: ChatCompletionRequest) -> int:
    """The request's own budget, else the model's configured one: 0 none, -1 no limit, N tokens."""
    if req.reasoning_budget is not None:
        return req.reasoning_budget
    configured = ex.state.scheduler.runner_config(ex.model.id).reasoning_budget
    return -1 if configured is None else configured


async def count_prompt_tokens(
    ex: Exchange, req: ChatCompletionRequest, messages: list[dict[str, Any]]
) -> int:
    """The prompt's token count as `start_chat` would build it (template, tools), nothing generated."""

    def count() -> int:
        return len(_prepare(ex, req, messages, None)[1])

    return await asyncio.to_thread(count)


async def _run(
    ex: Exchange, req: ChatCompletionRequest, messages: list[dict[str, Any]], max_tokens: int | None
) -> Response:
    run = await start_chat(ex, req, messages, max_tokens)
    cid, created, model = new_id("chatcmpl"), int(time.time()), req.model or ""
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return _stream(ex, ChatChunks(cid, created, model, include_usage), run.events, run.stream)
    (transcript,) = await collect_events(ex, [run.events], [run.stream])
    out = chat_completion(cid, created, model, transcript)
    ex.finish(200, out, None, transcript.usage)
    return JSONResponse(out)


def _prepare(
    ex: Exchange, req: ChatCompletionRequest, messages: list[dict[str, Any]], max_tokens: int | None
) -> tuple[str, list[int], chat.ToolMode, bool, GenerationParams]:
    """The prompt, its tokens, the tool mode, whether the prompt opened a think block, and the sampling."""
    engine = ex.runner.engine
    assert engine is not None
    tmpl = ex.state.template(ex.runner)
    mode = chat.tool_mode(tmpl, req.tools, req.tool_choice, parallel=req.parallel_tool_calls is not False)
    extra = dict(req.chat_template_kwargs or {})
    if reasoning_budget(ex, req) == 0:
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
    if tmpl.stop:  # a fallback template's end-of-turn marker ends the answer too
        params = dataclasses.replace(params, stop=tuple(dict.fromkeys((*params.stop, *tmpl.stop))))
    return prompt, tokens, mode, in_think, params


def _stream(
    ex: Exchange, renderer: ChatChunks, events: AsyncIterator[ChatEvent], stream: AsyncIterator[Any]
) -> Response:
    transcript = Transcript()

    async def chunks() -> AsyncIterator[str]:
        yield renderer.start()
        async for event in events:
            transcript.observe(event)
            for chunk in renderer.render(event):
                yield chunk

    def summary() -> tuple[Any, Usage | None, Exception | None]:
        doc = chat_completion(renderer.cid, renderer.created, renderer.model, transcript, recorded=True)
        return doc, transcript.usage, transcript.error

    return streaming_response(ex, chunks(), stream, summary)
