"""Fast tier: the token events -> typed chat events parser (dmr/chat/stream.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from dmr.chat.events import (
    ChatEvent,
    ContentDelta,
    ErrorEvent,
    Finish,
    ReasoningDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    Transcript,
    UsageReport,
)
from dmr.chat.stream import chat_events, text_events
from dmr.engine.protocol import FinishEvent, GenerationEvent, TokenEvent, Usage
from dmr.errors import EngineError

pytestmark = pytest.mark.fast


async def tokens(
    text: str, size: int = 3, fail: bool = False, reason: str = "stop"
) -> AsyncIterator[GenerationEvent]:
    for i in range(0, len(text), size):
        yield TokenEvent(0, text[i : i + size])
    if fail:
        raise EngineError("boom")
    yield FinishEvent(reason, Usage(5, 0, len(text)))


async def events_of(source: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [e async for e in source]


async def test_parallel_native_calls_start_args_end_in_order_without_overlap() -> None:
    text = (
        'Sure.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {"y": "z"}}\n</tool_call>'
    )
    seen: list[int] = []
    out = await events_of(
        chat_events(tokens(text), tool_kind="native", in_think=False, on_token=lambda: seen.append(1))
    )
    assert len(seen) == len(range(0, len(text), 3))
    kinds = [type(e) for e in out]
    assert kinds[-2:] == [UsageReport, Finish]
    assert out[-1] == Finish("tool_calls")
    open_call: int | None = None
    args: dict[int, str] = {}
    for e in out:
        if isinstance(e, ToolCallStart):
            assert open_call is None, "a call started while another was open"
            open_call = e.index
        elif isinstance(e, ToolCallArgs):
            assert e.index == open_call
            args[e.index] = args.get(e.index, "") + e.text
        elif isinstance(e, ToolCallEnd):
            assert e.index == open_call and e.arguments == args[e.index]
            open_call = None
    assert open_call is None
    assert json.loads(args[0]) == {"x": 1} and json.loads(args[1]) == {"y": "z"}
    t = Transcript()
    for e in out:
        t.observe(e)
    assert [c.name for c in t.tool_calls] == ["a", "b"]
    assert t.text == "Sure."


async def test_reasoning_then_content_and_length_kept() -> None:
    out = await events_of(
        chat_events(
            tokens("<think>why</think>because", reason="length"),
            tool_kind="none",
            in_think=False,
            on_token=lambda: None,
        )
    )
    assert "".join(e.text for e in out if isinstance(e, ReasoningDelta)) == "why"
    assert "".join(e.text for e in out if isinstance(e, ContentDelta)) == "because"
    assert out[-1] == Finish("length")


async def test_prompt_opened_think_block_starts_as_reasoning() -> None:
    out = await events_of(
        chat_events(tokens("a</think>b"), tool_kind="none", in_think=True, on_token=lambda: None)
    )
    assert [e.text for e in out if isinstance(e, ReasoningDelta)] == ["a"]


async def test_engine_failure_after_first_token_is_the_last_event() -> None:
    for source in (
        chat_events(tokens("abcdef", fail=True), tool_kind="none", in_think=False, on_token=lambda: None),
        text_events(tokens("abcdef", fail=True), lambda: None),
    ):
        out = await events_of(source)
        assert isinstance(out[-1], ErrorEvent) and str(out[-1].error) == "boom"
        assert not any(isinstance(e, (Finish, UsageReport)) for e in out)


async def test_a_call_without_arguments_gets_an_empty_object_before_it_ends() -> None:
    text = '{"tool_call": {"name": "now"}}'
    out = await events_of(
        chat_events(tokens(text), tool_kind="generic", in_think=False, on_token=lambda: None)
    )
    calls = [e for e in out if isinstance(e, (ToolCallStart, ToolCallArgs, ToolCallEnd))]
    assert isinstance(calls[0], ToolCallStart) and calls[0].name == "now"
    assert isinstance(calls[-1], ToolCallEnd) and calls[-1].arguments == "{}"
    assert "".join(e.text for e in calls if isinstance(e, ToolCallArgs)) == "{}"
