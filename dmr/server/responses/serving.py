"""POST /v1/responses and its stateful routes, on the one typed chat path (serving_chat.start_chat).

A request becomes a `Turn`: its normalised input items, the conversation before it (from the store, when
`previous_response_id` names one) and the chat request they make. The generation's typed events are
rendered by renderer.py (streamed) or added up by document.py (one document); a completed or incomplete
response is stored, unless `store` is false, with the whole conversation as chat messages including the
answer as generated, so that the next turn's prompt starts with this one's prompt and answer (the engine
reuses their tokens and KV cells: a follow-up turn's TTFT stays at the warm-turn level)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dmr.chat.events import Finish, Transcript
from dmr.engine.protocol import Usage
from dmr.server.errors import HTTPError
from dmr.server.openai_renderer import chat_message
from dmr.server.protocol import ChatCompletionRequest, decode
from dmr.server.responses import wire
from dmr.server.responses.document import ResponseHead, response_document
from dmr.server.responses.renderer import ResponseEvents
from dmr.server.responses.store import ResponseStore, StoredResponse, store_of
from dmr.server.serving import Exchange, collect_events, guarded, hold_model, streaming_response
from dmr.server.serving_chat import ChatRun, count_prompt_tokens, start_chat, validate_messages
from dmr.server.state import ServerState

DIALECT = "responses"


@dataclass
class Turn:
    """One request, read and checked: what it generates from, and what it stores."""

    req: wire.ResponsesRequest
    items: list[dict[str, Any]]  # this request's input items, normalised
    history: list[dict[str, Any]]  # the conversation before it (chat messages, no instructions)
    new: list[dict[str, Any]]  # this request's input as chat messages
    chat: ChatCompletionRequest
    head: ResponseHead

    @property
    def messages(self) -> list[dict[str, Any]]:
        """What the model sees: this request's instructions (OpenAI does not carry earlier ones over),
        the conversation so far, the new input."""
        system = [{"role": "system", "content": self.req.instructions}] if self.req.instructions else []
        return validate_messages(system + self.history + self.new)

    def conversation(self, answer: Transcript) -> list[dict[str, Any]]:
        """The conversation a follow-up continues: so far + new input + the answer exactly as generated."""
        return [*self.history, *self.new, chat_message(answer)]


def not_found(rid: str, param: str | None = None) -> HTTPError:
    return HTTPError(404, f"Response with id '{rid}' not found.", "invalid_request_error", param)


def read_turn(store: ResponseStore, body: bytes) -> Turn:
    """The request body -> a Turn (400 for what is malformed, 404 for an unknown previous response)."""
    req: wire.ResponsesRequest = decode(body, wire.ResponsesRequest)
    wire.check_request(req)
    items = wire.input_items(req.input)
    history: list[dict[str, Any]] = []
    if req.previous_response_id is not None:
        previous = store.get(req.previous_response_id)
        if previous is None:
            raise not_found(req.previous_response_id, "previous_response_id")
        history = [dict(m) for m in previous.messages]
    new = wire.chat_messages(items)
    if not new:
        raise wire.field_error("input", "input must hold at least one message or function call output")
    tools, tools_echo = wire.function_tools(req.tools)
    choice = wire.chat_tool_choice(req.tool_choice)
    chat = ChatCompletionRequest(
        model=req.model,
        messages=None,  # the Turn's messages: built when the turn runs
        stream=req.stream,
        temperature=req.temperature,
        top_p=req.top_p,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=req.parallel_tool_calls,
        response_format=wire.response_format(req.text),
        reasoning_budget=wire.reasoning_budget(req),
        user=req.user,
    )
    return Turn(req, items, history, new, chat, ResponseHead.of(req, tools_echo))


async def create_response(state: ServerState, request: Request, body: bytes) -> Response:
    turn = read_turn(store_of(request.app.state), body)
    messages = turn.messages
    assert turn.req.model is not None
    ex = await hold_model(state, request, body, turn.req.model, "responses", dialect=DIALECT)
    return await guarded(ex, lambda: _run(ex, turn, messages))


async def _run(ex: Exchange, turn: Turn, messages: list[dict[str, Any]]) -> Response:
    run = await start_chat(ex, turn.chat, messages, turn.req.max_output_tokens)
    store = store_of(ex.request.app.state)
    if turn.req.stream:
        return _stream(ex, turn, run, store)
    (transcript,) = await collect_events(ex, [run.events], [run.stream])
    doc = response_document(turn.head, transcript)
    _keep(store, turn, doc, transcript)
    ex.finish(200, doc, None, transcript.usage)
    return JSONResponse(doc)


def _keep(store: ResponseStore, turn: Turn, doc: dict[str, Any], transcript: Transcript) -> None:
    """Stores a finished response (not a failed or abandoned one) unless the request said store: false."""
    finished = doc["status"] in ("completed", "incomplete") and transcript.finish_reason != "abort"
    if finished and turn.req.store is not False:
        store.put(doc, turn.items, turn.conversation(transcript))


def _stream(ex: Exchange, turn: Turn, run: ChatRun, store: ResponseStore) -> Response:
    renderer = ResponseEvents(turn.head)
    transcript = Transcript()

    async def chunks() -> AsyncIterator[str]:
        for chunk in renderer.start():
            yield chunk
        async for event in run.events:
            transcript.observe(event)
            out = renderer.render(event)
            if isinstance(event, Finish) and renderer.final is not None:
                _keep(store, turn, renderer.final, transcript)  # before the client reads it is done
            for chunk in out:
                yield chunk

    def summary() -> tuple[Any, Usage | None, Exception | None]:
        doc = renderer.final or turn.head.document("in_progress", list(renderer.output))
        return doc, transcript.usage, transcript.error

    return streaming_response(ex, chunks(), run.stream, summary, error_chunk=renderer.failed)


async def count_input_tokens(state: ServerState, request: Request, body: bytes) -> Response:
    """POST .../responses/input_tokens: the prompt's tokens from the model's own template and tokenizer,
    as a create with the same body would render it (nothing generated, nothing stored)."""
    turn = read_turn(store_of(request.app.state), body)
    messages = turn.messages
    assert turn.req.model is not None
    ex = await hold_model(state, request, body, turn.req.model, "responses/input_tokens", dialect=DIALECT)

    async def count() -> Response:
        n = await count_prompt_tokens(ex, turn.chat, messages)
        doc = {"object": "response.input_tokens", "input_tokens": n}
        ex.finish(200, doc, None, None)
        return JSONResponse(doc)

    return await guarded(ex, count)


def _stored(request: Request) -> tuple[ResponseStore, StoredResponse]:
    rid = request.path_params["response_id"]
    store = store_of(request.app.state)
    entry = store.get(rid)
    if entry is None:
        raise not_found(rid)
    return store, entry


async def get_response(request: Request) -> Response:
    _, entry = _stored(request)
    return JSONResponse(entry.document)


async def delete_response(request: Request) -> Response:
    store, entry = _stored(request)
    store.delete(entry.id)
    return JSONResponse({"id": entry.id, "object": "response.deleted", "deleted": True})


MAX_LIMIT = 100


async def list_input_items(request: Request) -> Response:
    """GET .../responses/{id}/input_items: the response's own input items; `order` (desc by default, as
    OpenAI), `limit` (1-100, 20) and `after` (an item id) page through them."""
    _, entry = _stored(request)
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise HTTPError(400, "order must be asc or desc", param="order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise HTTPError(400, f"limit must be an integer between 1 and {MAX_LIMIT}", param="limit")
    items = entry.input_items if order == "asc" else entry.input_items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise HTTPError(400, f"no input item with id {after!r}", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )
