"""Typed chat events (dmr.chat.events) -> Ollama's wire format: NDJSON chunks for /api/chat and
/api/generate, and their one-object (`"stream": false`) documents.

Chunks are one compact JSON object per line, as Ollama's Go encoder writes them. A tool call is sent as
one whole object once the model has finished writing it (ToolCallEnd carries its complete arguments):
Ollama's clients read `message.tool_calls[].function.arguments` as an object, never as fragments (the
gap DMR has, open-webui#26880). The last chunk carries `done_reason` and the timings, in nanoseconds,
measured here: the load (getting the model), the prompt's evaluation (up to the first token) and the
generation (first token to the end)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from dmr.chat.events import (
    ChatEvent,
    ContentDelta,
    ErrorEvent,
    Finish,
    ReasoningDelta,
    TokenLogprobsEvent,
    ToolCall,
    ToolCallEnd,
    Transcript,
    UsageReport,
)
from dmr.engine.protocol import TokenLogprobs, Usage
from dmr.server.errors import dialect_error_body

log = logging.getLogger("dmr.server")

MEDIA_TYPE = "application/x-ndjson"
Kind = Literal["chat", "generate"]


def now_rfc3339() -> str:
    """Ollama's `created_at`: RFC 3339 in UTC with sub-second digits."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def line(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


def error_line(exc: BaseException) -> str:
    """An error after the 200 went out: Ollama's `{"error": "..."}` line (its clients raise on it)."""
    return line(dialect_error_body(exc, "ollama")[1])


@dataclass
class Timing:
    """When the request arrived, how long getting the model took, and when generation was submitted
    (time.perf_counter_ns); the first token's time comes from the exchange."""

    start_ns: int = field(default_factory=time.perf_counter_ns)
    load_ns: int = 0
    gen_ns: int = 0

    def fields(self, usage: Usage | None, first_token_s: float | None) -> dict[str, int]:
        end = time.perf_counter_ns()
        gen = self.gen_ns or end
        first = int(first_token_s * 1e9) if first_token_s is not None else end
        first = min(max(first, gen), end)
        return {
            "total_duration": end - self.start_ns,
            "load_duration": self.load_ns,
            "prompt_eval_count": usage.prompt_tokens if usage is not None else 0,
            "prompt_eval_duration": first - gen,
            "eval_count": usage.completion_tokens if usage is not None else 0,
            "eval_duration": end - first,
        }


def done_reason(reason: str | None) -> str:
    """Ollama knows "stop" and "length" for generations (a turn that ends in tool calls is a "stop")."""
    return "length" if reason == "length" else "stop"


def tool_call_json(index: int, cid: str, name: str, arguments: str) -> dict[str, Any]:
    """One whole tool call, its arguments parsed into the object Ollama's clients expect."""
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        args = None
    if not isinstance(args, dict):
        log.warning("tool call %s: arguments are not a JSON object: %.200s", name, arguments)
        args = {}
    return {"id": cid, "function": {"index": index, "name": name, "arguments": args}}


def _logprob(t: TokenLogprobs) -> dict[str, Any]:
    return {
        "token": t.chosen.token,
        "logprob": t.chosen.logprob,
        "bytes": list(t.chosen.bytes),
        "top_logprobs": [{"token": x.token, "logprob": x.logprob, "bytes": list(x.bytes)} for x in t.top],
    }


class OllamaChunks:
    """One streamed /api/chat or /api/generate answer: `render(event)` for each event in order.
    `context`: the generate route's token context for the final chunk (given the answer's text)."""

    def __init__(
        self,
        model: str,
        kind: Kind,
        timing: Timing,
        first_token: Callable[[], float | None],
        context: Callable[[str], list[int]] | None = None,
    ) -> None:
        self.model, self.kind, self.timing = model, kind, timing
        self._first_token = first_token
        self._context = context
        self._head = '{"model":' + json.dumps(model, ensure_ascii=False) + ',"created_at":"'
        self.usage: Usage | None = None
        self._text: list[str] = []
        self._logprobs: list[dict[str, Any]] = []
        self._n_calls = 0

    def _chunk(self, body: dict[str, Any]) -> str:
        if self._logprobs:
            body["logprobs"], self._logprobs = self._logprobs, []
        doc = {"model": self.model, "created_at": now_rfc3339(), **body, "done": False}
        return line(doc)

    def _delta(self, text: str, thinking: bool) -> str:
        if self._logprobs:
            field_name = "thinking" if thinking else "content"
            if self.kind == "chat":
                msg = {"role": "assistant", "content": "", field_name: text}
                return self._chunk({"message": msg})
            return self._chunk({"response": "", "thinking": text} if thinking else {"response": text})
        value = json.dumps(text, ensure_ascii=False)
        created = now_rfc3339()
        if self.kind == "chat":
            inner = '"content":"","thinking":' + value if thinking else '"content":' + value
            return self._head + created + '","message":{"role":"assistant",' + inner + '},"done":false}\n'
        inner = '"response":"","thinking":' + value if thinking else '"response":' + value
        return self._head + created + '",' + inner + ',"done":false}\n'

    def render(self, event: ChatEvent) -> list[str]:
        kind = type(event)
        if kind is ContentDelta:
            self._text.append(event.text)  # type: ignore[union-attr]
            return [self._delta(event.text, False)]  # type: ignore[union-attr]
        if kind is ReasoningDelta:
            return [self._delta(event.text, True)]  # type: ignore[union-attr]
        if kind is TokenLogprobsEvent:
            self._logprobs.append(_logprob(event.logprobs))  # type: ignore[union-attr]
            return []
        if isinstance(event, ToolCallEnd):
            call = tool_call_json(self._n_calls, event.id, event.name, event.arguments)
            self._n_calls += 1
            message = {"role": "assistant", "content": "", "tool_calls": [call]}
            return [self._chunk({"message": message})]
        if isinstance(event, UsageReport):
            self.usage = event.usage
            return []
        if isinstance(event, Finish):
            if event.reason == "abort":
                return []
            return [line(self.final(event.reason))]
        if isinstance(event, ErrorEvent):
            return [error_line(event.error)]
        return []  # ToolCallStart / ToolCallArgs: the call is sent whole at its end

    def final(self, reason: str | None) -> dict[str, Any]:
        body: dict[str, Any] = (
            {"message": {"role": "assistant", "content": ""}} if self.kind == "chat" else {"response": ""}
        )
        doc = {"model": self.model, "created_at": now_rfc3339(), **body, "done": True}
        doc["done_reason"] = done_reason(reason)
        if self.kind == "generate" and self._context is not None:
            doc["context"] = self._context("".join(self._text))
        if self._logprobs:
            doc["logprobs"], self._logprobs = self._logprobs, []
        doc.update(self.timing.fields(self.usage, self._first_token()))
        return doc


def chat_message(t: Transcript) -> dict[str, Any]:
    """The assistant message a transcript adds up to, in Ollama's shape."""
    msg: dict[str, Any] = {"role": "assistant", "content": t.text}
    if t.reasoning:
        msg["thinking"] = "".join(t.reasoning)
    if t.tool_calls:
        msg["tool_calls"] = [_call(i, c) for i, c in enumerate(t.tool_calls)]
    return msg


def _call(i: int, c: ToolCall) -> dict[str, Any]:
    return tool_call_json(i, c.id, c.name, c.arguments)


def document(
    model: str,
    kind: Kind,
    t: Transcript,
    timing: Timing,
    first_token_s: float | None,
    context: Callable[[str], list[int]] | None = None,
) -> dict[str, Any]:
    """The one-object answer (`"stream": false`), also what the recorder keeps of a streamed one."""
    doc: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if kind == "chat":
        doc["message"] = chat_message(t)
    else:
        doc["response"] = t.text
        if t.reasoning:
            doc["thinking"] = "".join(t.reasoning)
    doc["done"] = True
    doc["done_reason"] = done_reason(t.finish_reason)
    if kind == "generate" and context is not None:
        doc["context"] = context(t.text)
    if t.logprobs:
        doc["logprobs"] = [_logprob(x) for x in t.logprobs]
    doc.update(timing.fields(t.usage, first_token_s))
    return doc


def status_document(model: str, kind: Kind, reason: str) -> dict[str, Any]:
    """The answer to an empty chat or prompt: the model was loaded ("load") or unloaded ("unload")."""
    body: dict[str, Any] = (
        {"message": {"role": "assistant", "content": ""}} if kind == "chat" else {"response": ""}
    )
    return {"model": model, "created_at": now_rfc3339(), **body, "done": True, "done_reason": reason}
