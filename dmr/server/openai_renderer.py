"""Typed chat events (dmr.chat.events) -> OpenAI's wire format: chat.completion.chunk and text_completion
SSE streams, and the non-streaming JSON documents.

Streamed chunks are built with string formatting around a per-request prefix (no model object, no dict per
token); the bytes are what clients have always read: the role chunk first, one chunk per delta, the
finish chunk, the usage chunk when `stream_options.include_usage` asks for it, then `[DONE]`. An error
after the first byte is llama-server's `data: {"error": ...}` event, with no `[DONE]` after it."""

from __future__ import annotations

import json
from typing import Any

from dmr.chat.events import (
    ChatEvent,
    ContentDelta,
    ErrorEvent,
    Finish,
    ReasoningDelta,
    TokenLogprobsEvent,
    ToolCallArgs,
    ToolCallStart,
    Transcript,
    UsageReport,
)
from dmr.engine.protocol import Logprob, TokenLogprobs, Usage
from dmr.server import sse
from dmr.server.errors import sse_error_event


def usage_json(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }
    if u.drafted_tokens:
        out["completion_tokens_details"] = {
            "accepted_prediction_tokens": u.accepted_tokens,
            "rejected_prediction_tokens": u.drafted_tokens - u.accepted_tokens,
        }
    return out


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _entry(lp: Logprob) -> dict[str, Any]:
    return {"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.bytes)}


def chat_logprob(t: TokenLogprobs) -> dict[str, Any]:
    """One token of a chat choice's `logprobs.content`."""
    return {**_entry(t.chosen), "top_logprobs": [_entry(x) for x in t.top]}


def completion_logprobs(tokens: list[TokenLogprobs], offset: int = 0) -> dict[str, Any]:
    """A text completion choice's `logprobs` (the legacy shape); `offset`: where the tokens' text starts
    in the choice's text (after an echoed prompt)."""
    out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for t in tokens:
        out["tokens"].append(t.chosen.token)
        out["token_logprobs"].append(t.chosen.logprob)
        out["top_logprobs"].append({x.token: x.logprob for x in t.top})
        out["text_offset"].append(offset)
        offset += len(t.chosen.token)
    return out


class ChatChunks:
    """One streamed chat completion: `start()`, then `render(event)` for each event in order."""

    def __init__(self, cid: str, created: int, model: str, include_usage: bool) -> None:
        self.cid, self.created, self.model = cid, created, model
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self._head = (
            f'data: {{"id":"{cid}","object":"chat.completion.chunk","created":{created},'
            f'"model":{json.dumps(model)},"system_fingerprint":"dmr","choices":[{{"index":0,"delta":{{'
        )
        self._plain_tail = '},"logprobs":null,"finish_reason":null}]}\n\n'
        self._logprobs: list[dict[str, Any]] = []  # tokens whose log-probabilities no chunk has carried yet

    @property
    def _tail(self) -> str:
        """The end of a delta chunk: the tokens' log-probabilities ride on the chunk their text makes."""
        if not self._logprobs:
            return self._plain_tail
        pending, self._logprobs = self._logprobs, []
        return '},"logprobs":' + _text({"content": pending}) + ',"finish_reason":null}]}\n\n'

    def start(self) -> str:
        return self._head + '"role":"assistant","content":""' + self._plain_tail

    def render(self, event: ChatEvent) -> list[str]:
        kind = type(event)
        if kind is ContentDelta:
            return [self._head + '"content":' + _text(event.text) + self._tail]  # type: ignore[union-attr]
        if kind is TokenLogprobsEvent:
            self._logprobs.append(chat_logprob(event.logprobs))  # type: ignore[union-attr]
            return []
        if kind is ReasoningDelta:
            return [self._head + '"reasoning_content":' + _text(event.text) + self._tail]  # type: ignore[union-attr]
        if isinstance(event, ToolCallStart):
            header = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return [self._head + '"tool_calls":' + _text([header]) + self._tail]
        if isinstance(event, ToolCallArgs):
            part = {"index": event.index, "function": {"arguments": event.text}}
            return [self._head + '"tool_calls":' + _text([part]) + self._tail]
        if isinstance(event, UsageReport):
            self.usage = event.usage
            return []
        if isinstance(event, Finish):
            return self._finish(event)
        if isinstance(event, ErrorEvent):
            return [sse_error_event(event.error)]
        return []  # ToolCallEnd: OpenAI's stream has no end marker for a call

    def _chunk(self, choices: list[Any], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "dmr",
            "choices": choices,
            **extra,
        }

    def _finish(self, event: Finish) -> list[str]:
        pending, self._logprobs = self._logprobs, []  # e.g. the end-of-generation token's
        logprobs = {"content": pending} if pending else None
        out = [
            sse.data(
                self._chunk([{"index": 0, "delta": {}, "logprobs": logprobs, "finish_reason": event.reason}])
            )
        ]
        if self.include_usage and self.usage is not None:
            out.append(sse.data(self._chunk([], usage=usage_json(self.usage))))
        out.append(sse.DONE)
        return out


def chat_message(t: Transcript) -> dict[str, Any]:
    """The assistant message a transcript adds up to (content None when the answer is only tool calls)."""
    content: str | None = t.text
    if t.tool_calls and not content:
        content = None
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if t.tool_calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in t.tool_calls
        ]
    if t.reasoning:
        msg["reasoning_content"] = "".join(t.reasoning)
    return msg


def chat_completion(
    cid: str, created: int, model: str, t: Transcript, *, recorded: bool = False
) -> dict[str, Any]:
    """The chat.completion document. `recorded`: the shape the recorder keeps for a streamed answer."""
    choice: dict[str, Any] = {"index": 0, "message": chat_message(t), "finish_reason": t.finish_reason}
    if not recorded:
        choice["logprobs"] = (
            {"content": [chat_logprob(x) for x in t.logprobs], "refusal": None} if t.logprobs else None
        )
    doc: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_json(t.usage) if t.usage is not None else None,
    }
    if not recorded:
        doc["system_fingerprint"] = "dmr"
    return doc


class CompletionChunks:
    """One streamed text completion (`/completions`); `echo` is the prompt text sent first when asked."""

    def __init__(self, cid: str, created: int, model: str, include_usage: bool) -> None:
        self.cid, self.created, self.model = cid, created, model
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self._head = (
            f'data: {{"id":"{cid}","object":"text_completion","created":{created},'
            f'"model":{json.dumps(model)},"system_fingerprint":"dmr","choices":[{{"index":0,"text":'
        )
        self._tail = ',"logprobs":null,"finish_reason":null}]}\n\n'

        self._logprobs: list[TokenLogprobs] = []
        self._offset = 0  # where the next token's text starts in the choice's text

    def text(self, text: str) -> str:
        if not self._logprobs:
            self._offset += len(text)
            return self._head + _text(text) + self._tail
        lp = completion_logprobs(self._logprobs, self._offset)
        self._offset += len(text)
        self._logprobs = []
        return self._head + _text(text) + ',"logprobs":' + _text(lp) + ',"finish_reason":null}]}\n\n'

    def render(self, event: ChatEvent) -> list[str]:
        if type(event) is TokenLogprobsEvent:
            self._logprobs.append(event.logprobs)
            return []
        if type(event) is ContentDelta:
            return [self.text(event.text)]
        if isinstance(event, UsageReport):
            self.usage = event.usage
            return []
        if isinstance(event, ErrorEvent):
            return [sse_error_event(event.error)]
        if not isinstance(event, Finish):
            return []
        base = {"id": self.cid, "object": "text_completion", "created": self.created, "model": self.model}
        choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": event.reason}
        out = [sse.data({**base, "system_fingerprint": "dmr", "choices": [choice]})]
        if self.include_usage and self.usage is not None:
            out.append(sse.data({**base, "choices": [], "usage": usage_json(self.usage)}))
        out.append(sse.DONE)
        return out


def text_completion(
    cid: str, created: int, model: str, choices: list[tuple[str, Transcript]]
) -> dict[str, Any]:
    """The text_completion document over (echoed prompt, transcript) per choice, usage summed."""
    out = [
        {
            "index": i,
            "text": echo + t.text,
            "finish_reason": t.finish_reason,
            "logprobs": completion_logprobs(t.logprobs, len(echo)) if t.logprobs else None,
        }
        for i, (echo, t) in enumerate(choices)
    ]
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": out,
        "usage": usage_json(total_usage([t for _, t in choices])),
        "system_fingerprint": "dmr",
    }


def total_usage(choices: list[Transcript]) -> Usage:
    u = [t.usage or Usage(0, 0, 0) for t in choices]
    return Usage(*(sum(getattr(x, f) for x in u) for f in Usage.__slots__))
