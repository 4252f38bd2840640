"""Fast tier: chat/completions over the in-process app and the scripted FakeEngine (fake_server.py).

The bytes a client reads are checked exactly where clients depend on them (the SSE framing, the first and
last chunks, [DONE], the usage chunk, the error event after the first byte)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

CHAT = "/engines/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hi"}]


async def test_answer_is_the_engines_text_with_usage_and_is_recorded(fake: FakeServer) -> None:
    r = await fake.client.post(CHAT, json={"model": MODEL, "messages": HELLO})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the fake engine."}
    assert doc["choices"][0]["finish_reason"] == "stop"
    # byte-level tokenizer: the prompt tokens are BOS + the rendered prompt's bytes
    prompt = fake.engine.prompts[-1]
    assert "<|im_start|>user\nHi<|im_end|>" in prompt  # no template in the file: ChatML
    assert doc["usage"]["prompt_tokens"] == len(prompt.encode()) + 1
    assert doc["usage"]["completion_tokens"] == len("Hello from the fake engine.")
    rec = (await fake.client.get("/engines/requests")).json()
    assert any(json.loads(x["response"])["id"] == doc["id"] for x in _records(rec))


def _records(doc: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorder's groups (one per model) flattened to their records, oldest first."""
    return [rec for group in doc for rec in group["records"]]


async def test_stream_bytes_first_chunk_deltas_last_chunk_usage_and_done(fake: FakeServer) -> None:
    fake.script.replies = ["ab"]
    r = await fake.raw(
        "POST",
        CHAT,
        {"model": MODEL, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = r.sse_events()
    first = events[0]
    cid, created = first["id"], first["created"]
    head = (
        f'data: {{"id":"{cid}","object":"chat.completion.chunk","created":{created},"model":"{MODEL}",'
        '"system_fingerprint":"dmr","choices":[{"index":0,"delta":{'
    )
    tail = '},"logprobs":null,"finish_reason":null}]}\n\n'
    body = r.body.decode()
    assert body.startswith(head + '"role":"assistant","content":""' + tail)
    assert head + '"content":"a"' + tail + head + '"content":"b"' + tail in body
    assert events[-1] == "[DONE]"
    assert body.endswith("data: [DONE]\n\n")
    last, usage = events[-3], events[-2]
    assert last["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2
    assert {e["id"] for e in events[:-1]} == {cid}


async def test_stream_without_include_usage_has_no_usage_chunk(fake: FakeServer) -> None:
    r = await fake.raw("POST", CHAT, {"model": MODEL, "messages": HELLO, "stream": True})
    events = r.sse_events()
    assert all("usage" not in e for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_ends_with_length(fake: FakeServer) -> None:
    for stream in (False, True):
        r = await fake.client.post(
            CHAT, json={"model": MODEL, "messages": HELLO, "max_tokens": 3, "stream": stream}
        )
        assert r.status_code == 200
        if stream:
            events = [json.loads(x[6:]) for x in r.text.split("\n\n") if x.startswith("data: {")]
            text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
            assert events[-1]["choices"][0]["finish_reason"] == "length"
        else:
            text = r.json()["choices"][0]["message"]["content"]
            assert r.json()["choices"][0]["finish_reason"] == "length"
        assert text == "Hel"
    assert fake.engine.params[-1].max_tokens == 3


async def test_reasoning_is_split_from_content_streamed_and_not(fake: FakeServer) -> None:
    fake.script.replies = ["<think>plan it</think>The answer."]
    fake.script.piece_size = 3
    doc = (await fake.client.post(CHAT, json={"model": MODEL, "messages": HELLO})).json()
    msg = doc["choices"][0]["message"]
    assert msg["reasoning_content"] == "plan it"
    assert msg["content"] == "The answer."
    r = await fake.raw("POST", CHAT, {"model": MODEL, "messages": HELLO, "stream": True})
    deltas = [e["choices"][0]["delta"] for e in r.sse_events()[:-1] if e["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "plan it"
    assert "".join(d.get("content", "") for d in deltas) == "The answer."


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'


async def test_generic_tool_call_streamed_and_not(fake: FakeServer) -> None:
    fake.script.replies = [CALL]
    fake.script.piece_size = 4
    body = {"model": MODEL, "messages": HELLO, "tools": TOOLS, "tool_choice": "required"}
    doc = (await fake.client.post(CHAT, json=body)).json()
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert fake.engine.params[-1].grammar  # required: the call is forced by a grammar
    r = await fake.raw("POST", CHAT, {**body, "stream": True})
    events = r.sse_events()[:-1]
    calls = [d for e in events if e["choices"] for d in e["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    args = "".join(c["function"].get("arguments", "") for c in calls)
    assert json.loads(args) == {"city": "Paris"}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_openai_sdk_over_the_app_streams_and_parses(fake: FakeServer) -> None:
    client = openai.AsyncOpenAI(
        base_url="http://localhost:12434/engines/v1", api_key="x", http_client=fake.client, max_retries=0
    )
    out = await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert out.choices[0].message.content == "Hello from the fake engine."
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert "".join(parts) == "Hello from the fake engine."
    assert usage is not None and usage.completion_tokens == len("Hello from the fake engine.")


async def test_error_after_first_byte_is_an_sse_error_event_and_recorded(fake: FakeServer) -> None:
    fake.script.fail_after = 3
    r = await fake.raw("POST", CHAT, {"model": MODEL, "messages": HELLO, "stream": True})
    assert r.status == 200  # the headers were sent before the failure
    events = r.sse_events()
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if "choices" in e)
    assert text == "Hel"
    error = events[-1]
    assert error["error"]["message"].startswith("the fake engine failed mid-stream")
    assert "[DONE]" not in events
    await asyncio.sleep(0)
    rec = _records((await fake.client.get("/engines/requests")).json())
    assert rec and "failed mid-stream" in str(rec[-1].get("error"))
    assert _in_use(fake) == 0


async def test_error_before_first_byte_is_an_http_error(fake: FakeServer) -> None:
    fake.script.n_ctx = 8
    for stream in (False, True):
        r = await fake.client.post(CHAT, json={"model": MODEL, "messages": HELLO, "stream": stream})
        assert r.status_code == 400
        assert "context" in r.json()["error"]["message"]
    assert _in_use(fake) == 0


async def test_client_disconnect_mid_stream_aborts_the_generation(fake: FakeServer) -> None:
    fake.script.replies = ["x" * 200]
    fake.script.delay_s = 0.005
    r = await fake.raw("POST", CHAT, {"model": MODEL, "messages": HELLO, "stream": True}, disconnect_after=3)
    assert len(r.chunks) == 3
    for _ in range(100):
        if fake.engine.aborts:
            break
        await asyncio.sleep(0.01)
    assert fake.engine.aborts == 1 and fake.engine.active == 0
    assert _in_use(fake) == 0


async def test_client_disconnect_while_collecting_aborts(fake: FakeServer) -> None:
    fake.script.replies = ["x" * 200]
    fake.script.delay_s = 0.005

    r = await fake.raw("POST", CHAT, {"model": MODEL, "messages": HELLO}, leave_after_s=0.1)
    assert r.status == 0  # nothing reached the client
    assert fake.engine.aborts == 1
    assert _in_use(fake) == 0


async def test_bad_requests_are_400_in_openai_shape(fake: FakeServer) -> None:
    cases = [
        {"model": MODEL, "messages": []},
        {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
        {"model": MODEL, "messages": HELLO, "tools": "nope"},
        {"model": MODEL, "messages": HELLO, "response_format": {"type": "xml"}},
        {"model": MODEL, "messages": [{"role": "assistant", "content": "x", "tool_calls": [1]}]},
    ]
    for body in cases:
        r = await fake.client.post(CHAT, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"
    r = await fake.client.post(CHAT, json={"model": "ai/missing", "messages": HELLO})
    assert r.status_code == 404
    assert _in_use(fake) == 0


async def test_json_response_format_sets_a_grammar(fake: FakeServer) -> None:
    fake.script.replies = ['{"a": 1}']
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = {
        "model": MODEL,
        "messages": HELLO,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    doc = (await fake.client.post(CHAT, json=body)).json()
    assert json.loads(doc["choices"][0]["message"]["content"]) == {"a": 1}
    assert "root" in (fake.engine.params[-1].grammar or "")


def _in_use(fake: FakeServer) -> int:
    return sum(r.in_use for r in fake.loader.runners.values())


async def test_logprobs_streamed_and_not_on_chat_and_completions(fake: FakeServer) -> None:
    """logprobs / top_logprobs were ignored (logprobs: null); llama-server returns them (issue #18, 5)."""
    fake.script.replies = ["abc"]
    body = {"model": MODEL, "messages": HELLO, "logprobs": True, "top_logprobs": 2}
    doc = (await fake.client.post(CHAT, json=body)).json()
    content = doc["choices"][0]["logprobs"]["content"]
    assert [c["token"] for c in content] == ["a", "b", "c"]
    assert content[1]["logprob"] == pytest.approx(-0.2) and content[1]["bytes"] == [98]
    assert [t["token"] for t in content[0]["top_logprobs"]] == ["alt0", "alt1"]
    # without logprobs: null, as before
    plain = (await fake.client.post(CHAT, json={"model": MODEL, "messages": HELLO})).json()
    assert plain["choices"][0]["logprobs"] is None
    # streamed: each token's entry rides on the chunk its text makes
    r = await fake.raw("POST", CHAT, {**body, "stream": True})
    chunks = [e for e in r.sse_events() if e != "[DONE]"]
    streamed = [c for e in chunks for ch in e["choices"] if ch["logprobs"] for c in ch["logprobs"]["content"]]
    assert [c["token"] for c in streamed] == ["a", "b", "c"]
    for e in chunks:
        ch = e["choices"][0]
        if ch["delta"].get("content"):
            assert ch["logprobs"]["content"][0]["token"] == ch["delta"]["content"]
    # the openai SDK reads them
    client = openai.AsyncOpenAI(
        base_url="http://localhost:12434/engines/v1", api_key="x", http_client=fake.client, max_retries=0
    )
    answer = await client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        logprobs=True,
        top_logprobs=1,  # type: ignore[arg-type]
    )
    assert answer.choices[0].logprobs is not None and answer.choices[0].logprobs.content
    assert answer.choices[0].logprobs.content[0].top_logprobs[0].token == "alt0"
    # a bad request
    r2 = await fake.client.post(CHAT, json={**body, "top_logprobs": 21})
    assert r2.status_code == 400 and "top_logprobs" in r2.text
    r3 = await fake.client.post(CHAT, json={"model": MODEL, "messages": HELLO, "top_logprobs": 2})
    assert r3.status_code == 400 and r3.json()["error"]["param"] == "top_logprobs"
    # completions: the legacy shape, offsets after an echoed prompt
    comp = {"model": MODEL, "prompt": "Hi", "logprobs": 1, "echo": True}
    doc = (await fake.client.post("/engines/v1/completions", json=comp)).json()
    lp = doc["choices"][0]["logprobs"]
    assert lp["tokens"] == ["a", "b", "c"] and lp["text_offset"] == [2, 3, 4]
    assert lp["token_logprobs"][0] == pytest.approx(-0.1) and lp["top_logprobs"][0] == {"alt0": -1.0}
    r = await fake.raw("POST", "/engines/v1/completions", {**comp, "stream": True})
    parts = [e["choices"][0]["logprobs"] for e in r.sse_events() if e != "[DONE]" and e["choices"]]
    offsets = [o for p in parts if p for o in p["text_offset"]]
    assert offsets == [2, 3, 4]
