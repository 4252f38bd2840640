"""Typed chat events (dmr.chat.events) -> the Responses API's server-sent events.

Each event is `event: <type>` plus `data: {type, sequence_number, ...}`, numbered from 0; there is no
`[DONE]`. Order: response.created, response.in_progress; per output item output_item.added, then for a
message content_part.added, output_text.delta ..., output_text.done, content_part.done (reasoning the same
with reasoning_text), for a function call function_call_arguments.delta ..., .done; output_item.done; and
last response.completed, response.incomplete (max_output_tokens) or response.failed (the engine failed
after the stream began).

The per-token events (text, reasoning and argument deltas) are string formatting around a prefix made
once per item, as the chat renderer does: no dict and no model object per token."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dmr.chat.events import (
    ChatEvent,
    ContentDelta,
    ErrorEvent,
    Finish,
    ReasoningDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    UsageReport,
)
from dmr.engine.protocol import Usage
from dmr.server.responses.document import (
    ResponseHead,
    error_object,
    final_status,
    function_call_item,
    message_item,
    reasoning_item,
    text_part,
    usage_json,
)
from dmr.server.responses.wire import new_id


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Open:
    """The output item being streamed."""

    kind: str  # "message" | "reasoning" | "function_call"
    id: str
    index: int
    delta_prefix: str  # the delta event's members before the delta text
    parts: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


class ResponseEvents:
    """One streamed response: `start()`, then `render(event)` for each event in order. `final` is the
    response document once the stream has ended (completed, incomplete or failed)."""

    def __init__(self, head: ResponseHead) -> None:
        self.head = head
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # finished items, in order
        self.usage: Usage | None = None
        self.reasoning_pieces = 0
        self.final: dict[str, Any] | None = None
        self._open: _Open | None = None

    # --- framing -------------------------------------------------------------------------------------
    def _event(self, kind: str, members: dict[str, Any]) -> str:
        seq, self.seq = self.seq, self.seq + 1
        return f"event: {kind}\ndata: " + _json({"type": kind, "sequence_number": seq, **members}) + "\n\n"

    def _delta(self, kind: str, prefix: str, text: str) -> str:
        seq, self.seq = self.seq, self.seq + 1
        return (
            f'event: {kind}\ndata: {{"type":"{kind}","sequence_number":{seq},{prefix}"delta":'
            + _json(text)
            + "}\n\n"
        )

    # --- the stream ----------------------------------------------------------------------------------
    def start(self) -> list[str]:
        doc = self.head.document("in_progress", [])
        return [
            self._event("response.created", {"response": doc}),
            self._event("response.in_progress", {"response": doc}),
        ]

    def render(self, event: ChatEvent) -> list[str]:
        kind = type(event)
        opened = self._open
        if kind is ContentDelta:
            out = [] if opened is not None and opened.kind == "message" else self._open_message()
            return self._text(out, "response.output_text.delta", event.text)  # type: ignore[union-attr]
        if kind is ReasoningDelta:
            self.reasoning_pieces += 1
            out = [] if opened is not None and opened.kind == "reasoning" else self._open_reasoning()
            return self._text(out, "response.reasoning_text.delta", event.text)  # type: ignore[union-attr]
        if isinstance(event, ToolCallStart):
            return self._open_call(event)
        if isinstance(event, ToolCallArgs):
            if opened is None or opened.kind != "function_call" or not event.text:
                return []
            opened.parts.append(event.text)
            return [self._delta("response.function_call_arguments.delta", opened.delta_prefix, event.text)]
        if isinstance(event, ToolCallEnd):
            return self._close("completed", arguments=event.arguments)
        if isinstance(event, UsageReport):
            self.usage = event.usage
            return []
        if isinstance(event, Finish):
            return self._finish(event)
        if isinstance(event, ErrorEvent):
            return [self.failed(event.error)]
        return []  # TokenLogprobsEvent: the Responses renderer sends no log-probabilities

    def failed(self, exc: BaseException) -> str:
        """The `response.failed` event for an error after the stream began (the engine's, or the
        renderer's own: streaming_response's error_chunk)."""
        output = list(self.output)
        if self._open is not None:
            output.append(self._item(self._open, "incomplete"))
            self._open = None
        self.final = self.head.document(
            "failed", output, usage_json(self.usage, self.reasoning_pieces), error=error_object(exc)
        )
        return self._event("response.failed", {"response": self.final})

    # --- items ---------------------------------------------------------------------------------------
    def _text(self, out: list[str], kind: str, text: str) -> list[str]:
        opened = self._open
        assert opened is not None
        if text:
            opened.parts.append(text)
            out.append(self._delta(kind, opened.delta_prefix, text))
        return out

    def _begin(self, item: dict[str, Any]) -> tuple[str, int, list[str]]:
        """Closes the open item and announces `item`: its id, its output index and the events so far."""
        out = self._close("completed")
        index = len(self.output)
        out.append(self._event("response.output_item.added", {"output_index": index, "item": item}))
        return item["id"], index, out

    def _open_message(self) -> list[str]:
        item_id, index, out = self._begin(message_item(new_id("msg"), None, "in_progress"))
        out.append(self._event("response.content_part.added", self._at(item_id, index, part=text_part(""))))
        prefix = f'"item_id":"{item_id}","output_index":{index},"content_index":0,"logprobs":[],'
        self._open = _Open("message", item_id, index, prefix)
        return out

    def _open_reasoning(self) -> list[str]:
        item_id, index, out = self._begin(reasoning_item(new_id("rs"), None, "in_progress"))
        part = {"type": "reasoning_text", "text": ""}
        out.append(self._event("response.content_part.added", self._at(item_id, index, part=part)))
        prefix = f'"item_id":"{item_id}","output_index":{index},"content_index":0,'
        self._open = _Open("reasoning", item_id, index, prefix)
        return out

    def _open_call(self, event: ToolCallStart) -> list[str]:
        item = function_call_item(new_id("fc"), event.id, event.name, "", "in_progress")
        item_id, index, out = self._begin(item)
        prefix = f'"item_id":"{item_id}","output_index":{index},'
        self._open = _Open("function_call", item_id, index, prefix, call_id=event.id, name=event.name)
        return out

    @staticmethod
    def _at(item_id: str, index: int, **members: Any) -> dict[str, Any]:
        return {"item_id": item_id, "output_index": index, "content_index": 0, **members}

    def _item(self, opened: _Open, status: str, arguments: str | None = None) -> dict[str, Any]:
        text = "".join(opened.parts)
        if opened.kind == "message":
            return message_item(opened.id, text, status)
        if opened.kind == "reasoning":
            return reasoning_item(opened.id, text, status)
        args = arguments if arguments is not None else text
        return function_call_item(opened.id, opened.call_id, opened.name, args, status)

    def _close(self, status: str, arguments: str | None = None) -> list[str]:
        """The open item's done events (none open: nothing)."""
        opened, self._open = self._open, None
        if opened is None:
            return []
        item = self._item(opened, status, arguments)
        out: list[str] = []
        if opened.kind == "function_call":
            done = {"item_id": opened.id, "output_index": opened.index, "name": opened.name}
            out.append(
                self._event("response.function_call_arguments.done", {**done, "arguments": item["arguments"]})
            )
        else:
            text = item["content"][0]["text"]
            if opened.kind == "message":
                at = self._at(opened.id, opened.index, text=text, logprobs=[])
                out.append(self._event("response.output_text.done", at))
            else:
                out.append(
                    self._event("response.reasoning_text.done", self._at(opened.id, opened.index, text=text))
                )
            out.append(
                self._event(
                    "response.content_part.done", self._at(opened.id, opened.index, part=item["content"][0])
                )
            )
        out.append(self._event("response.output_item.done", {"output_index": opened.index, "item": item}))
        self.output.append(item)
        return out

    def _finish(self, event: Finish) -> list[str]:
        status, reason = final_status(event.reason)
        item_status = "incomplete" if status == "incomplete" else "completed"
        out = self._close(item_status)
        if not any(item["type"] in ("message", "function_call") for item in self.output):
            out += self._open_message()  # an empty answer is still a message, as the document has it
            out += self._close(item_status)
        self.final = self.head.document(
            status, list(self.output), usage_json(self.usage, self.reasoning_pieces), incomplete_reason=reason
        )
        name = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(name, {"response": self.final}))
        return out
