"""A request's reasoning budget, enforced: once the model has reasoned for `budget` tokens without closing
its think block, the generation is stopped and continued from the same text with `</think>` appended, so
the model answers now (what llama.cpp's `--reasoning-budget` does by forcing the closing tag's tokens).

The continuation is a second generation over prompt + reasoning + `</think>`: the engine reuses the
cached prefix (only the closing tag is evaluated), and the answer's events follow the reasoning's as if
one generation had produced them; usage adds up the two. Anthropic's `thinking.budget_tokens`, and any
positive budget a model is configured with, go through here; 0 (no reasoning) and -1 (no limit) do not."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

from dmr.chat.events import ChatEvent, ContentDelta, ReasoningDelta, ToolCallStart, UsageReport
from dmr.chat.stream import chat_events
from dmr.engine.chat import THINK_CLOSE
from dmr.engine.protocol import Engine, GenerationEvent, GenerationParams, TokenEvent, Usage
from dmr.server.serving import start_generation, tokenize_prompt


class _Tee:
    """The engine stream, with the raw text and count of the tokens it has passed on."""

    def __init__(self, stream: AsyncIterator[GenerationEvent]) -> None:
        self.stream = stream
        self.text: list[str] = []
        self.tokens = 0

    def __aiter__(self) -> _Tee:
        return self

    async def __anext__(self) -> GenerationEvent:
        ev = await self.stream.__anext__()
        if type(ev) is TokenEvent:
            self.text.append(ev.text)
            self.tokens += 1
        return ev


async def budgeted_events(
    engine: Engine,
    prompt: str,
    n_prompt: int,
    stream: AsyncIterator[GenerationEvent],
    params: GenerationParams,
    *,
    budget: int,
    tool_kind: str,
    in_think: bool,
    on_token: Callable[[], None],
) -> AsyncIterator[ChatEvent]:
    """chat_events over `stream`, cut after `budget` reasoning deltas (a delta per token, at most) and
    continued past a forced `</think>`. `stream` itself is closed by the caller; the continuation here."""
    tee = _Tee(stream)
    reasoning = 0
    answering = False  # the think block closed by itself: nothing to enforce
    events = chat_events(tee, tool_kind=tool_kind, in_think=in_think, on_token=on_token)
    cut = False
    try:
        async for event in events:
            if isinstance(event, ToolCallStart) or (isinstance(event, ContentDelta) and event.text.strip()):
                answering = True
            yield event
            if isinstance(event, ReasoningDelta) and not answering:
                reasoning += 1
                if reasoning >= budget:
                    cut = True
                    break
    finally:
        await _aclose(events)
    if not cut:
        return
    await _aclose(stream)  # the reasoning stops here: the engine frees the sequence (its cells stay cached)
    text = prompt + "".join(tee.text) + THINK_CLOSE + "\n\n"
    tokens = tokenize_prompt(engine, text)
    left = None if params.max_tokens is None else max(1, params.max_tokens - tee.tokens)
    rest = start_generation(engine, tokens, dataclasses.replace(params, max_tokens=left), text=text)
    try:
        async for event in chat_events(rest, tool_kind=tool_kind, in_think=False, on_token=on_token):
            if isinstance(event, UsageReport):
                u = event.usage
                event = UsageReport(
                    Usage(n_prompt, min(u.cached_tokens, n_prompt), tee.tokens + u.completion_tokens)
                )
            yield event
    finally:
        await _aclose(rest)


async def _aclose(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
