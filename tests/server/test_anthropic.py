"""Fast tier: Anthropic's Messages API over the in-process app and the scripted FakeEngine (fake_server.py).

The anthropic SDK itself reads the answers (over an ASGI transport), so what its parsers need is checked;
the event order and the error shapes are checked on the bytes."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

MESSAGES = "/v1/messages"
HELLO = [{"role": "user", "content": "Hi"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
CALL = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'


def sdk(fake: FakeServer) -> anthropic.AsyncAnthropic:
    # anthropic 2.x runs on httpx2, which has its own ASGI transport
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake.app), base_url="http://localhost:12434")
    return anthropic.AsyncAnthropic(base_url="http://localhost:12434", api_key="dmr", http_client=http)


def sse_events(body: bytes) -> list[tuple[str, Any]]:
    out = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_message_through_the_sdk_with_usage_and_recorded_as_anthropic(fake: FakeServer) -> None:
    async with sdk(fake) as client:
        msg = await client.messages.create(
            model=MODEL, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "Hi"}]
        )
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Hello from the fake engine."  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    prompt = fake.engine.prompts[-1]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in prompt and "<|im_start|>user\nHi" in prompt
    assert msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0) == len(prompt.encode()) + 1
    assert msg.usage.output_tokens == len("Hello from the fake engine.")
    groups = (await fake.client.get("/engines/requests")).json()
    (rec,) = [r for g in groups for r in g["records"]]
    assert rec["dialect"] == "anthropic" and rec["url"] == MESSAGES
    assert json.loads(rec["response"])["id"] == msg.id


async def test_stream_event_order_and_the_sdks_final_message(fake: FakeServer) -> None:
    fake.script.replies = ["<think>Let me see.</think>Hello!"]
    r = await fake.raw(
        "POST", MESSAGES, {"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True}
    )
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.body)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(name == doc["type"] for name, doc in events)
    starts = [doc["content_block"]["type"] for name, doc in events if name == "content_block_start"]
    assert starts == ["thinking", "text"]
    thinking = "".join(d["delta"].get("thinking", "") for n, d in events if n == "content_block_delta")
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert thinking == "Let me see." and text == "Hello!"
    # each block is opened, filled and closed before the next one opens
    indices = [(n, d.get("index")) for n, d in events if n.startswith("content_block")]
    assert indices[0] == ("content_block_start", 0) and ("content_block_stop", 0) in indices
    assert indices.index(("content_block_stop", 0)) < indices.index(("content_block_start", 1))
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 0
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] > 0

    fake.script.replies = ["<think>Let me see.</think>Hello!"]
    async with (
        sdk(fake) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        streamed = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed == "Hello!"
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me see."  # type: ignore[union-attr]


async def test_tool_use_streamed_as_input_json_delta_and_not(fake: FakeServer) -> None:
    fake.script.replies = [CALL]
    body = {
        "model": MODEL,
        "max_tokens": 200,  # the fake tokenizer is byte-level: a token per character of the call
        "messages": HELLO,
        "tools": TOOLS,
        "tool_choice": {"type": "any"},
    }
    async with sdk(fake) as client:
        msg = await client.messages.create(**body)  # type: ignore[arg-type]
        assert msg.stop_reason == "tool_use"
        (block,) = msg.content
        assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
        assert fake.engine.params[-1].grammar is not None  # "any" forces a call: the grammar says so
        async with client.messages.stream(**body) as stream:  # type: ignore[arg-type]
            final = await stream.get_final_message()
    (streamed,) = final.content
    assert streamed.type == "tool_use" and streamed.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    r = await fake.raw("POST", MESSAGES, {**body, "stream": True})
    deltas = [d["delta"] for n, d in sse_events(r.body) if n == "content_block_delta"]
    assert deltas and all(d["type"] == "input_json_delta" for d in deltas)
    assert json.loads("".join(d["partial_json"] for d in deltas)) == {"city": "Paris"}


async def test_tool_round_trip_renders_the_call_and_its_result(fake: FakeServer) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "22C"}],
                },
                {"type": "text", "text": "Thanks, summarise."},
            ],
        },
    ]
    r = await fake.client.post(
        MESSAGES, json={"model": MODEL, "max_tokens": 32, "messages": messages, "tools": TOOLS}
    )
    assert r.status_code == 200, r.text
    prompt = fake.engine.prompts[-1]
    assert '"city": "Paris"' in prompt and "22C" in prompt and "Thanks, summarise." in prompt
    assert prompt.index("22C") < prompt.index("Thanks, summarise.")


async def test_count_tokens_is_the_rendered_prompt(fake: FakeServer) -> None:
    body = {"model": MODEL, "messages": HELLO, "system": "Be brief."}
    async with sdk(fake) as client:
        counted = await client.messages.count_tokens(**body)  # type: ignore[arg-type]
        msg = await client.messages.create(max_tokens=8, **body)  # type: ignore[arg-type]
    assert counted.input_tokens == msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0)
    with_tools = await fake.client.post(f"{MESSAGES}/count_tokens", json={**body, "tools": TOOLS})
    assert with_tools.json()["input_tokens"] > counted.input_tokens  # the tools are in the prompt


async def test_every_path_dmr_serves_it_on(fake: FakeServer) -> None:
    for prefix in ("/v1", "/anthropic/v1", "/engines/v1", "/engines/fake/v1"):
        r = await fake.client.post(
            f"{prefix}/messages", json={"model": MODEL, "max_tokens": 8, "messages": HELLO}
        )
        assert r.status_code == 200 and r.json()["type"] == "message", (prefix, r.text)
        r = await fake.client.post(
            f"{prefix}/messages/count_tokens", json={"model": MODEL, "messages": HELLO}
        )
        assert r.status_code == 200 and r.json()["input_tokens"] > 0, prefix
    r = await fake.client.post(
        "/engines/nope/v1/messages", json={"model": MODEL, "max_tokens": 8, "messages": HELLO}
    )
    assert r.status_code == 404 and r.json()["type"] == "error"


async def test_max_tokens_stop_sequences_sampling_and_thinking_map_to_the_engine(fake: FakeServer) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 5,
        "messages": HELLO,
        "temperature": 0.3,
        "top_p": 0.5,
        "top_k": 7,
        "stop_sequences": ["END"],
        "thinking": {"type": "disabled"},
    }
    r = await fake.client.post(MESSAGES, json=body)
    doc = r.json()
    assert doc["stop_reason"] == "max_tokens" and doc["usage"]["output_tokens"] == 5
    p = fake.engine.params[-1]
    fake.script.reply = lambda prompt: "Hello END of it"  # the engine is loaded: replies are fixed
    for stream in (False, True):
        r = await fake.raw("POST", MESSAGES, {**body, "max_tokens": 64, "stream": stream})
        if stream:
            doc = next(d for n, d in sse_events(r.body) if n == "message_delta")["delta"]
        else:
            doc = json.loads(r.body)
            assert doc["content"][0]["text"] == "Hello "
        assert (doc["stop_reason"], doc["stop_sequence"]) == ("stop_sequence", "END")
    assert (p.max_tokens, p.temperature, p.top_p, p.top_k, p.stop[0]) == (5, 0.3, 0.5, 7, "END")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HELLO, "max_tokens": 8}, "model"),
        ({"model": MODEL, "messages": HELLO}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 8, "messages": []}, "messages"),
        (
            {"model": MODEL, "max_tokens": 8, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role",
        ),
        (
            {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": 3}]},
            "messages.0.content",
        ),
        (
            {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            "messages.0.content.0",
        ),
        (
            {"model": MODEL, "max_tokens": 8, "messages": HELLO, "tools": [{"type": "web_search_20250305"}]},
            None,
        ),
        ({"model": MODEL, "max_tokens": 8, "messages": HELLO, "tool_choice": {"type": "maybe"}}, None),
        ({"model": MODEL, "max_tokens": 8, "messages": HELLO, "thinking": {"type": "enabled"}}, None),
        ({"model": MODEL, "max_tokens": "8", "messages": HELLO}, "max_tokens"),
    ],
)
async def test_bad_requests_get_anthropics_error_shape(
    fake: FakeServer, body: dict[str, Any], param: str | None
) -> None:
    r = await fake.client.post(MESSAGES, json=body)
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
    assert doc["error"]["message"]
    if param is not None:
        assert param in doc["error"]["message"]


async def test_unknown_model_not_json_and_too_deep_are_4xx_in_anthropics_shape(fake: FakeServer) -> None:
    r = await fake.client.post(MESSAGES, json={"model": "ai/nope", "max_tokens": 8, "messages": HELLO})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = await fake.client.post(MESSAGES, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    deep = b'{"model": "ai/fake", "max_tokens": 8, "messages": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    r = await fake.client.post(MESSAGES, content=deep)
    assert r.status_code == 400 and r.json()["type"] == "error"


async def test_error_after_the_stream_began_is_an_error_event(fake: FakeServer) -> None:
    fake.script.fail_after = 3
    r = await fake.raw(
        "POST", MESSAGES, {"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True}
    )
    events = sse_events(r.body)
    assert events[0][0] == "message_start"
    name, doc = events[-1]
    assert name == "error" and doc["type"] == "error" and doc["error"]["message"]
    assert "message_stop" not in [n for n, _ in events]


async def test_a_client_that_leaves_mid_stream_aborts_the_generation(fake: FakeServer) -> None:
    fake.script.delay_s = 0.01
    fake.script.replies = ["x" * 500]
    body = {"model": MODEL, "max_tokens": 600, "messages": HELLO, "stream": True}
    await fake.raw("POST", MESSAGES, body, disconnect_after=4)
    assert fake.engine.aborts == 1 and fake.engine.active == 0


BLOCK = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "tool_use", "tool_result", "thinking", "image", "x"])}
    ),
    st.dictionaries(
        st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=8)), max_size=3
    ),
)
CONTENT = st.one_of(st.text(max_size=20), st.lists(BLOCK, max_size=3), st.integers(), st.none())
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", 1]), "content": CONTENT}
)
BODY = st.fixed_dictionaries(
    {"model": st.just(MODEL), "max_tokens": st.one_of(st.integers(-2, 20), st.text(max_size=3))},
    optional={
        "messages": st.lists(MESSAGE, max_size=3),
        "system": st.one_of(st.text(max_size=10), st.lists(BLOCK, max_size=2)),
        "tools": st.lists(
            st.dictionaries(st.sampled_from(["name", "type", "input_schema"]), st.text(max_size=5))
        ),
        "tool_choice": st.dictionaries(st.sampled_from(["type", "name"]), st.text(max_size=5), max_size=2),
        "thinking": st.dictionaries(
            st.sampled_from(["type", "budget_tokens"]), st.integers(-1, 9), max_size=2
        ),
        "stop_sequences": st.lists(st.text(max_size=3), max_size=3),
        "stream": st.booleans(),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODY)
async def test_fuzzed_messages_requests_never_get_a_5xx(fake: FakeServer, body: dict[str, Any]) -> None:
    r = await fake.client.post(MESSAGES, json=body)
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        assert r.json()["type"] == "error", r.text


def _thinker(prompt: str) -> str:
    """Reasons at length unless its think block was closed for it; then answers."""
    return "The answer." if prompt.endswith("</think>\n\n") else "<think>" + "a" * 100 + "</think>never"


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_budget_is_enforced(fake: FakeServer, stream: bool) -> None:
    fake.script.reply = _thinker
    body = {
        "model": MODEL,
        "max_tokens": 200,
        "messages": HELLO,
        "thinking": {"type": "enabled", "budget_tokens": 10},
        "stream": stream,
    }
    async with sdk(fake) as client:
        if stream:
            async with client.messages.stream(**{k: v for k, v in body.items() if k != "stream"}) as s:  # type: ignore[arg-type]
                msg = await s.get_final_message()
        else:
            msg = await client.messages.create(**body)  # type: ignore[arg-type]
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "a" * 10  # type: ignore[union-attr]
    assert msg.content[1].text == "The answer."  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == len("<think>") + 10 + len("The answer.")
    assert fake.engine.aborts == 1  # the reasoning was stopped, not run to its end
    # without a budget the same model reasons to its end
    body["thinking"] = {"type": "adaptive"}
    r = await fake.client.post(MESSAGES, json={**body, "stream": False})
    assert r.json()["content"][0]["thinking"] == "a" * 100


async def test_refusals_before_any_route_are_in_the_dialects_shape(tmp_path: Any) -> None:
    keyed = FakeServer(tmp_path, api_key="secret")
    try:
        async with sdk(keyed) as client:  # the anthropic SDK sends its key as x-api-key
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)  # type: ignore[arg-type]
        assert refused.value.body == {  # type: ignore[comparison-overlap]
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid or missing API key"},
        }
        r = await keyed.client.post("/api/chat", json={"model": MODEL})
        assert r.status_code == 401 and r.json() == {"error": "invalid or missing API key"}
        r = await keyed.client.post(
            MESSAGES,
            headers={"x-api-key": "secret", "anthropic-version": "2023-06-01"},
            json={"model": MODEL, "max_tokens": 8, "messages": HELLO},
        )
        assert r.status_code == 200 and r.json()["type"] == "message"
    finally:
        await keyed.close()
