"""An engine's token events -> typed chat events (dmr.chat.events), one pass per request.

Reasoning is split from content as it streams (`<think>` ... `</think>`, dmr.engine.chat.ReasoningSplitter);
with tools, content goes through the incremental tool-call parser (dmr.engine.tool_stream), which reports a
call's name as soon as it is written and its arguments fragment by fragment. A failure of the engine after
the first event ends the events with ErrorEvent rather than an exception, so that each dialect can render
it after its response has started; a cancellation (client gone) still propagates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from dmr.chat.events import (
    ChatEvent,
    ContentDelta,
    ErrorEvent,
    Finish,
    FinishReason,
    ReasoningDelta,
    TokenLogprobsEvent,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    UsageReport,
)
from dmr.engine.chat import ReasoningSplitter
from dmr.engine.protocol import FinishEvent, GenerationEvent, TokenEvent
from dmr.engine.tool_stream import ToolCallStream


def _finish_reason(engine_reason: str) -> FinishReason:
    if engine_reason in ("stop", "length", "abort"):
        return engine_reason  # type: ignore[return-value]
    return "stop"


async def text_events(
    stream: AsyncIterator[GenerationEvent], on_token: Callable[[], None]
) -> AsyncIterator[ChatEvent]:
    """Plain text completion: every token's text is content."""
    finish: FinishEvent | None = None
    try:
        async for ev in stream:
            if type(ev) is TokenEvent:
                on_token()
                if ev.logprobs is not None:
                    yield TokenLogprobsEvent(ev.logprobs)
                yield ContentDelta(ev.text)
            else:
                finish = ev  # type: ignore[assignment]
    except Exception as exc:
        yield ErrorEvent(exc)
        return
    assert finish is not None, "the engine's stream ended without a finish event"
    yield UsageReport(finish.usage)
    yield Finish(_finish_reason(finish.finish_reason), finish.stop_word)


class _ToolEvents:
    """ToolCallStream's OpenAI-shaped deltas -> typed tool-call events (a call ends when the next starts)."""

    def __init__(self, kind: str) -> None:
        self.parser = ToolCallStream(kind)
        self.open: int | None = None

    def convert(self, deltas: list[tuple[str, Any]]) -> list[ChatEvent]:
        out: list[ChatEvent] = []
        for kind, value in deltas:
            if kind == "content":
                out.append(ContentDelta(value))
                continue
            for part in value:
                fn = part["function"]
                if "id" in part:
                    out.extend(self._close())
                    self.open = part["index"]
                    out.append(ToolCallStart(part["index"], part["id"], fn["name"]))
                    if fn.get("arguments"):
                        out.append(ToolCallArgs(part["index"], fn["arguments"]))
                else:
                    out.append(ToolCallArgs(part["index"], fn["arguments"]))
        return out

    def _close(self) -> list[ChatEvent]:
        if self.open is None:
            return []
        call = self.parser.calls[self.open]
        self.open = None
        out: list[ChatEvent] = []
        if not call.args:  # what the parser's finish() would send for it, sent before the call ends
            call.args.append("{}")
            out.append(ToolCallArgs(call.index, "{}"))
        out.append(ToolCallEnd(call.index, call.id, call.name or "", call.arguments()))
        return out

    def feed(self, text: str) -> list[ChatEvent]:
        return self.convert(self.parser.feed(text))

    def finish(self) -> list[ChatEvent]:
        out = self.convert(self.parser.finish())
        out.extend(self._close())  # the earlier calls were closed when the next one started
        return out


async def chat_events(
    stream: AsyncIterator[GenerationEvent],
    *,
    tool_kind: str,
    in_think: bool,
    on_token: Callable[[], None],
) -> AsyncIterator[ChatEvent]:
    """tool_kind: "none", "native" (Hermes/Qwen <tool_call> blocks) or "generic" (dmr's JSON tool format).
    in_think: the prompt opened a think block, so the answer starts as reasoning."""
    splitter = ReasoningSplitter(in_think)
    tools = _ToolEvents(tool_kind) if tool_kind != "none" else None

    def convert(parts: list[tuple[str, str]]) -> list[ChatEvent]:
        out: list[ChatEvent] = []
        for kind, text in parts:
            if kind == "reasoning":
                out.append(ReasoningDelta(text))
            elif tools is None:
                out.append(ContentDelta(text))
            else:
                out.extend(tools.feed(text))
        return out

    finish: FinishEvent | None = None
    try:
        async for ev in stream:
            if type(ev) is TokenEvent:
                on_token()
                if ev.logprobs is not None:
                    yield TokenLogprobsEvent(ev.logprobs)
                for event in convert(splitter.feed(ev.text)):
                    yield event
            else:
                finish = ev  # type: ignore[assignment]
    except Exception as exc:
        yield ErrorEvent(exc)
        return
    assert finish is not None, "the engine's stream ended without a finish event"
    for event in convert(splitter.flush()):
        yield event
    reason = _finish_reason(finish.finish_reason)
    if tools is not None:
        for event in tools.finish():
            yield event
        if tools.parser.calls and reason == "stop":  # a call cut short stays "length"
            reason = "tool_calls"
    yield UsageReport(finish.usage)
    yield Finish(reason, finish.stop_word)
