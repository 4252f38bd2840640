"""End to end: the real `anthropic` client from PyPI against a real `dmr serve` and the real SmolLM2
(issue #14): messages, streams with text and a tool call's input_json_delta, a tool round trip,
count_tokens, stop sequences, the thinking budget, and Claude Code's way of pointing at the server."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from .conftest import MODEL, THINKER
from .helpers import Server

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    with anthropic.Anthropic(base_url=server.url, api_key="dmr", max_retries=0, timeout=120) as c:
        yield c


def test_message_with_system_prompt_and_usage(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(
        model=MODEL,
        max_tokens=24,
        extra_body={"temperature": 0},  # the SDK no longer has sampling arguments; the API takes them
        system="You are a geography teacher. Answer in one short sentence.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    (block,) = msg.content
    assert block.type == "text" and "Paris" in block.text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and 0 < msg.usage.output_tokens <= 24
    # the same conversation again: the prompt comes from the engine's prefix cache
    again = client.messages.create(
        model=MODEL,
        max_tokens=24,
        extra_body={"temperature": 0},  # the SDK no longer has sampling arguments; the API takes them
        system="You are a geography teacher. Answer in one short sentence.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert (again.usage.cache_read_input_tokens or 0) > 0
    total = again.usage.input_tokens + (again.usage.cache_read_input_tokens or 0)
    assert total == msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0)


def test_stream_text_matches_the_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=24,
        extra_body={"temperature": 0},  # the SDK no longer has sampling arguments; the API takes them
        messages=[{"role": "user", "content": "Say hello."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip()
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.usage.output_tokens > 0


def test_stream_tool_call_as_input_json_delta_then_round_trip(client: anthropic.Anthropic) -> None:
    kinds: list[str] = []
    partial: list[str] = []
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        extra_body={"temperature": 0},  # the SDK no longer has sampling arguments; the API takes them
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partial.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    call = next(b for b in final.content if b.type == "tool_use")
    assert (
        call.name == "get_weather"
        and isinstance(call.input, dict)
        and isinstance(call.input.get("city"), str)
    )
    assert len(partial) > 1 and json.loads("".join(partial)) == call.input  # the input streamed in fragments
    assert kinds[0] == "message_start" and "content_block_stop" in kinds and kinds[-1] == "message_stop"

    answer = client.messages.create(
        model=MODEL,
        max_tokens=32,
        extra_body={"temperature": 0},  # the SDK no longer has sampling arguments; the API takes them
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "none"},  # the answer now, in prose (SmolLM2 would call the tool again)
        messages=[
            *ASK,
            {"role": "assistant", "content": [c.model_dump() for c in final.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 22 degrees Celsius"}
                ],
            },
        ],  # type: ignore[arg-type]
    )
    assert answer.content and answer.content[0].type == "text" and answer.content[0].text.strip()
    assert answer.stop_reason in ("end_turn", "max_tokens")


def test_count_tokens_matches_what_the_message_uses(client: anthropic.Anthropic) -> None:
    body: dict[str, Any] = {"model": MODEL, "system": "Be brief.", "messages": ASK}
    counted = client.messages.count_tokens(**body)
    used = client.messages.create(max_tokens=4, **body)
    assert counted.input_tokens == used.usage.input_tokens + (used.usage.cache_read_input_tokens or 0)
    with_tools = client.messages.count_tokens(**body, tools=[WEATHER])
    assert with_tools.input_tokens > counted.input_tokens


def test_stop_sequence_is_reported(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(
        model=MODEL,
        max_tokens=48,
        extra_body={"temperature": 0},  # the SDK no longer has sampling arguments; the API takes them
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        stop_sequences=["5"],
    )
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "5"
    assert "5" not in msg.content[0].text and "4" in msg.content[0].text  # type: ignore[union-attr]


def test_thinking_budget_is_enforced_on_a_reasoning_model(client: anthropic.Anthropic) -> None:
    # THINKER's template opens a think block that SmolLM2 never closes by itself: only the budget ends it
    msg = client.messages.create(
        model=THINKER,
        max_tokens=60,
        extra_body={"temperature": 0},  # the SDK no longer has sampling arguments; the API takes them
        thinking={"type": "enabled", "budget_tokens": 16},
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    kinds = [b.type for b in msg.content]
    assert kinds[0] == "thinking" and "text" in kinds, kinds
    thinking = msg.content[0].thinking  # type: ignore[union-attr]
    assert thinking.strip() and len(thinking.split()) <= 16  # 16 tokens hold at most 16 words
    assert msg.usage.output_tokens <= 60
    off = client.messages.create(
        model=THINKER,
        max_tokens=16,
        extra_body={"temperature": 0},  # the SDK no longer has sampling arguments; the API takes them
        thinking={"type": "disabled"},
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert [b.type for b in off.content] == ["text"]


def test_errors_are_anthropic_errors(client: anthropic.Anthropic, server: Server) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.create(model="ai/not-here", max_tokens=4, messages=ASK)  # type: ignore[arg-type]
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=4, messages=[])
    r = httpx.post(f"{server.url}/v1/messages", content=b'{"model": 1', timeout=30)
    assert r.status_code == 400 and r.json()["type"] == "error"


def test_claude_code_style_base_url_and_headers(server: Server) -> None:
    # Claude Code sets ANTHROPIC_BASE_URL to the server root and sends x-api-key and anthropic-version
    r = httpx.post(
        f"{server.url}/v1/messages",
        headers={"x-api-key": "anything", "anthropic-version": "2023-06-01", "anthropic-beta": "x"},
        json={"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["type"] == "message"
    for prefix in ("/anthropic/v1", "/engines/v1", "/engines/llama.cpp/v1"):
        r = httpx.post(
            f"{server.url}{prefix}/messages/count_tokens",
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["input_tokens"] > 0, prefix
