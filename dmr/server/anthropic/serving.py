"""POST messages and messages/count_tokens: a Messages request becomes the typed chat request, goes down the
one chat path (serving_chat.start_chat) and its events come back as Anthropic's message or event stream."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dmr.chat.events import ChatEvent, Transcript
from dmr.engine.protocol import Usage
from dmr.server.anthropic.renderer import MessageEvents, error_event, message
from dmr.server.anthropic.wire import MessagesRequest, chat_messages, chat_request
from dmr.server.protocol import decode
from dmr.server.serving import Exchange, collect_events, guarded, hold_model, streaming_response
from dmr.server.serving_chat import ChatRun, count_prompt_tokens, start_chat, validate_messages
from dmr.server.state import ServerState

DIALECT = "anthropic"


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


async def create_message(state: ServerState, request: Request, body: bytes) -> Response:
    req: MessagesRequest = decode(body, MessagesRequest)
    chat = chat_request(req)
    messages = validate_messages(chat_messages(req))
    assert req.model is not None
    ex = await hold_model(state, request, body, req.model, "messages", DIALECT)
    return await guarded(ex, lambda: _run(ex, req, chat, messages))


async def _run(ex: Exchange, req: MessagesRequest, chat: Any, messages: list[dict[str, Any]]) -> Response:
    run = await start_chat(ex, chat, messages, chat.max_tokens)
    mid, model, asked = message_id(), req.model or "", tuple(req.stop_sequences or ())
    if req.stream:
        return _stream(ex, MessageEvents(mid, model, run.n_prompt, asked), run)
    (transcript,) = await collect_events(ex, [run.events], [run.stream])
    out = message(mid, model, transcript, run.n_prompt, asked)
    ex.finish(200, out, None, transcript.usage)
    return JSONResponse(out)


def _stream(ex: Exchange, renderer: MessageEvents, run: ChatRun) -> Response:
    transcript = Transcript()

    async def chunks() -> AsyncIterator[str]:
        yield renderer.start()
        event: ChatEvent
        async for event in run.events:
            transcript.observe(event)
            for chunk in renderer.render(event):
                yield chunk

    def summary() -> tuple[Any, Usage | None, Exception | None]:
        doc = message(renderer.mid, renderer.model, transcript, renderer.n_prompt, renderer.asked)
        return doc, transcript.usage, transcript.error

    return streaming_response(ex, chunks(), run.stream, summary, error_chunk=error_event)


async def count_tokens(state: ServerState, request: Request, body: bytes) -> Response:
    """`{"input_tokens": N}`: the prompt the same request would render (template, system, tools), counted
    by the model's own tokenizer."""
    req: MessagesRequest = decode(body, MessagesRequest)
    chat = chat_request(req, count_only=True)
    messages = validate_messages(chat_messages(req))
    assert req.model is not None
    ex = await hold_model(state, request, body, req.model, "messages/count_tokens", DIALECT)

    async def count() -> Response:
        doc = {"input_tokens": await count_prompt_tokens(ex, chat, messages)}
        ex.finish(200, doc, None, None)
        return JSONResponse(doc)

    return await guarded(ex, count)
