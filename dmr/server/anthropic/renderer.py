"""Typed chat events (dmr.chat.events) -> Anthropic's Messages wire format: the `message` document and the
SSE event stream (`message_start`, `ping`, per content block `content_block_start` / `content_block_delta` /
`content_block_stop`, `message_delta`, `message_stop`; `error` when generation fails after the start).

Blocks follow the order the model wrote them in: reasoning becomes a `thinking` block, answer text a `text`
block and each tool call a `tool_use` block whose input streams as `input_json_delta` fragments."""

from __future__ import annotations

import json
from typing import Any

from dmr.chat.events import (
    ChatEvent,
    ContentDelta,
    ErrorEvent,
    Finish,
    FinishReason,
    ReasoningDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    Transcript,
    UsageReport,
)
from dmr.engine.protocol import Usage
from dmr.server import sse
from dmr.server.errors import dialect_error_body


def asked_stop(stop_sequence: str | None, asked: tuple[str, ...]) -> str | None:
    """The stop string that ended the answer if the client asked for it (not a template's end-of-turn)."""
    return stop_sequence if stop_sequence in asked else None


def stop_reason(reason: FinishReason | None, stop_sequence: str | None) -> str:
    if reason == "length":
        return "max_tokens"
    if reason == "tool_calls":
        return "tool_use"
    if stop_sequence is not None:
        return "stop_sequence"
    return "end_turn"


def usage_json(u: Usage | None, n_prompt: int) -> dict[str, Any]:
    """Anthropic counts prompt tokens read from its cache apart from `input_tokens` (the two add up to the
    prompt): dmr's cached tokens are the prefix the engine reused."""
    if u is None:
        return {"input_tokens": n_prompt, "output_tokens": 0, "cache_read_input_tokens": 0}
    return {
        "input_tokens": u.prompt_tokens - u.cached_tokens,
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def tool_input(arguments: str) -> Any:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def content_blocks(t: Transcript) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if t.reasoning:
        blocks.append({"type": "thinking", "thinking": "".join(t.reasoning), "signature": ""})
    if t.text or not t.tool_calls:
        blocks.append({"type": "text", "text": t.text})
    for c in t.tool_calls:
        blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(c.arguments)})
    return blocks


def message(
    mid: str, model: str, t: Transcript, n_prompt: int, asked: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The `message` document a transcript adds up to (`asked`: the request's stop_sequences)."""
    stop = asked_stop(t.stop_sequence, asked)
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(t),
        "stop_reason": stop_reason(t.finish_reason, stop),
        "stop_sequence": stop,
        "usage": usage_json(t.usage, n_prompt),
    }


def error_event(exc: BaseException) -> str:
    _, body = dialect_error_body(exc, "anthropic")
    return sse.event("error", body)


class MessageEvents:
    """One streamed message: `start()`, then `render(event)` for each chat event in order."""

    def __init__(self, mid: str, model: str, n_prompt: int, asked: tuple[str, ...] = ()) -> None:
        self.mid, self.model, self.n_prompt, self.asked = mid, model, n_prompt, asked
        self.usage: Usage | None = None
        self._index = -1
        self._open: str | None = None  # the open block's kind: "thinking", "text" or "tool_use"

    def start(self) -> str:
        doc = {
            "type": "message_start",
            "message": {
                "id": self.mid,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": self.n_prompt, "output_tokens": 0},
            },
        }
        return sse.event("message_start", doc) + sse.event("ping", {"type": "ping"})

    def _close(self) -> list[str]:
        if self._open is None:
            return []
        out = []
        if (
            self._open == "thinking"
        ):  # Anthropic signs its thinking; a local model's carries an empty signature
            out.append(self._delta({"type": "signature_delta", "signature": ""}))
        self._open = None
        out.append(sse.event("content_block_stop", {"type": "content_block_stop", "index": self._index}))
        return out

    def _begin(self, kind: str, block: dict[str, Any]) -> list[str]:
        out = self._close()
        self._index += 1
        self._open = kind
        doc = {"type": "content_block_start", "index": self._index, "content_block": block}
        out.append(sse.event("content_block_start", doc))
        return out

    def _delta(self, delta: dict[str, Any]) -> str:
        return sse.event(
            "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}
        )

    def render(self, event: ChatEvent) -> list[str]:
        if isinstance(event, ContentDelta):
            if not event.text:
                return []
            out = [] if self._open == "text" else self._begin("text", {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": event.text}))
            return out
        if isinstance(event, ReasoningDelta):
            if not event.text:
                return []
            block = {"type": "thinking", "thinking": "", "signature": ""}
            out = [] if self._open == "thinking" else self._begin("thinking", block)
            out.append(self._delta({"type": "thinking_delta", "thinking": event.text}))
            return out
        if isinstance(event, ToolCallStart):
            return self._begin(
                "tool_use", {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            )
        if isinstance(event, ToolCallArgs):
            return [self._delta({"type": "input_json_delta", "partial_json": event.text})]
        if isinstance(event, ToolCallEnd):
            return self._close()
        if isinstance(event, UsageReport):
            self.usage = event.usage
            return []
        if isinstance(event, Finish):
            return self._finish(event.reason, event.stop_sequence)
        if isinstance(event, ErrorEvent):
            return [*self._close(), error_event(event.error)]
        return []  # log-probabilities: Anthropic's API has none

    def _finish(self, reason: FinishReason, stop_sequence: str | None) -> list[str]:
        stop_sequence = asked_stop(stop_sequence, self.asked)
        out = self._close()
        if self._index < 0:  # an empty answer still has its (empty) text block, as the document does
            out += self._begin("text", {"type": "text", "text": ""}) + self._close()
        usage = usage_json(self.usage, self.n_prompt)
        delta = {"stop_reason": stop_reason(reason, stop_sequence), "stop_sequence": stop_sequence}
        out.append(sse.event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(sse.event("message_stop", {"type": "message_stop"}))
        return out
