"""Fast tier: the Responses API (dmr/server/responses) over the in-process app and the scripted FakeEngine.

The bytes are checked where clients depend on them (event names, their order, the sequence numbers, no
[DONE]); the openai SDK itself is pointed at the ASGI app to show that it parses what is sent. The store's
bounds and TTL are driven with its own clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmr.server.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar
from dmr.server.responses.store import ResponseStore, store_of

from .fake_server import MODEL, FakeServer
from .strategies import json_values as json_values_of

pytestmark = [
    pytest.mark.fast,
    pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict:DeprecationWarning"),  # hypothesis
]

URL = "/v1/responses"
ANSWER = "Hello from the fake engine."
CALL = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def events_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event line, data) per SSE block; every block must have both."""
    out = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        out.append((name[len("event: ") :], json.loads(data[len("data: ") :])))
    return out


async def create(fake: FakeServer, **body: Any) -> dict[str, Any]:
    r = await fake.client.post(URL, json={"model": MODEL, **body})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def stream(fake: FakeServer, **body: Any) -> list[tuple[str, dict[str, Any]]]:
    r = await fake.raw("POST", URL, {"model": MODEL, "stream": True, **body})
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("text/event-stream")
    assert b"[DONE]" not in r.body
    return events_of(r.body)


@pytest.fixture
async def sdk(fake: FakeServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The openai SDK over the in-process app."""
    transport = httpx2.ASGITransport(app=fake.app)  # openai 3.x runs on httpx2, with its own ASGI transport
    async with (
        httpx2.AsyncClient(transport=transport) as http,
        openai.AsyncOpenAI(
            base_url="http://localhost:12434/v1", api_key="x", http_client=http, max_retries=0
        ) as client,
    ):
        yield client


# --- the response object ---------------------------------------------------------------------------------


async def test_answer_is_a_message_with_usage_and_the_request_is_recorded_as_responses(
    fake: FakeServer,
) -> None:
    doc = await create(fake, input="Hi", instructions="Be brief.", metadata={"k": "v"}, temperature=0.5)
    assert doc["id"].startswith("resp_") and doc["object"] == "response"
    assert doc["status"] == "completed" and doc["error"] is None and doc["incomplete_details"] is None
    assert doc["completed_at"] >= doc["created_at"]
    (item,) = doc["output"]
    assert item["type"] == "message" and item["role"] == "assistant" and item["id"].startswith("msg_")
    assert item["content"] == [{"type": "output_text", "text": ANSWER, "annotations": [], "logprobs": []}]
    prompt = fake.engine.prompts[-1]
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>")
    usage = doc["usage"]
    assert usage["input_tokens"] == len(prompt.encode()) + 1  # byte tokenizer + BOS
    assert usage["output_tokens"] == len(ANSWER)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert doc["instructions"] == "Be brief." and doc["metadata"] == {"k": "v"} and doc["temperature"] == 0.5
    assert doc["store"] is True and doc["tool_choice"] == "auto" and doc["parallel_tool_calls"] is True
    assert doc["text"] == {"format": {"type": "text"}}
    records = [r for g in (await fake.client.get("/engines/requests")).json() for r in g["records"]]
    (rec,) = [r for r in records if json.loads(r["response"]).get("id") == doc["id"]]
    assert rec["dialect"] == "responses" and rec["url"] == URL


async def test_the_openai_sdk_parses_create_and_stream(sdk: openai.AsyncOpenAI, fake: FakeServer) -> None:
    response = await sdk.responses.create(model=MODEL, input="Hi")
    assert response.output_text == ANSWER
    assert response.usage is not None and response.usage.output_tokens == len(ANSWER)
    deltas = []
    async with sdk.responses.stream(model=MODEL, input="Hi") as events:
        async for event in events:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await events.get_final_response()
    assert "".join(deltas) == ANSWER == final.output_text
    assert final.status == "completed"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/responses",
        "/responses",
        "/engines/responses",
        "/engines/v1/responses",
        "/engines/fake/v1/responses",
    ],
)
async def test_every_prefix_serves_create_get_items_count_and_delete(fake: FakeServer, path: str) -> None:
    r = await fake.client.post(path, json={"model": MODEL, "input": "Hi"})
    assert r.status_code == 200, r.text
    rid = r.json()["id"]
    assert (await fake.client.get(f"{path}/{rid}")).json() == r.json()
    assert (await fake.client.get(f"{path}/{rid}/input_items")).json()["object"] == "list"
    count = await fake.client.post(f"{path}/input_tokens", json={"model": MODEL, "input": "Hi"})
    assert count.json() == {
        "object": "response.input_tokens",
        "input_tokens": r.json()["usage"]["input_tokens"],
    }
    deleted = await fake.client.delete(f"{path}/{rid}")
    assert deleted.json() == {"id": rid, "object": "response.deleted", "deleted": True}


async def test_an_unknown_backend_is_a_404(fake: FakeServer) -> None:
    r = await fake.client.post("/engines/nope/v1/responses", json={"model": MODEL, "input": "Hi"})
    assert r.status_code == 404 and r.json()["error"]["message"]


async def test_max_output_tokens_makes_it_incomplete(fake: FakeServer) -> None:
    doc = await create(fake, input="Hi", max_output_tokens=3)
    assert doc["status"] == "incomplete"
    assert doc["incomplete_details"] == {"reason": "max_output_tokens"}
    assert doc["output"][0]["content"][0]["text"] == ANSWER[:3]
    assert doc["output"][0]["status"] == "incomplete"
    events = await stream(fake, input="Hi", max_output_tokens=3)
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert (await fake.client.get(f"{URL}/{doc['id']}")).status_code == 200  # incomplete ones are kept


# --- streaming ------------------------------------------------------------------------------------------


async def test_stream_event_order_sequence_numbers_and_final_response(fake: FakeServer) -> None:
    fake.script.replies = ["ab"]
    events = await stream(fake, input="Hi")
    names = [name for name, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["type"] for _, data in events] == names
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    item_id = events[2][1]["item"]["id"]
    assert {data["item_id"] for _, data in events[3:8]} == {item_id}
    assert [data["delta"] for _, data in events[4:6]] == ["a", "b"]
    assert events[6][1]["text"] == "ab"
    final = events[-1][1]["response"]
    assert final["id"] == created["id"] and final["status"] == "completed"
    assert final["output"] == [events[8][1]["item"]]
    assert final["output"][0]["content"][0]["text"] == "ab"
    assert final["usage"]["output_tokens"] == 2
    stored = (await fake.client.get(f"{URL}/{final['id']}")).json()
    assert stored == final


async def test_an_engine_failure_after_the_first_event_is_response_failed(fake: FakeServer) -> None:
    fake.script.fail_after = 2
    events = await stream(fake, input="Hi")
    name, data = events[-1]
    assert name == "response.failed"
    assert data["response"]["status"] == "failed"
    assert data["response"]["error"]["code"] == "server_error" and data["response"]["error"]["message"]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert (await fake.client.get(f"{URL}/{data['response']['id']}")).status_code == 404  # not kept
    r = await fake.client.post(URL, json={"model": MODEL, "input": "Hi"})
    assert r.status_code >= 500 and r.json()["error"]["message"]  # nothing sent yet: an HTTP error


async def test_reasoning_is_its_own_item_streamed_and_not(fake: FakeServer) -> None:
    fake.script.replies = ["<think>plan</think>Done."]
    doc = await create(fake, input="Hi")
    reasoning, message = doc["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "plan"}]
    assert message["content"][0]["text"] == "Done."
    assert doc["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    events = await stream(fake, input="Hi")
    names = [n for n, _ in events]
    assert "response.reasoning_text.delta" in names and "response.reasoning_text.done" in names
    assert names.index("response.reasoning_text.done") < names.index("response.output_text.delta")
    text = "".join(d["delta"] for n, d in events if n == "response.reasoning_text.delta")
    assert text == "plan"
    assert [i["type"] for i in events[-1][1]["response"]["output"]] == ["reasoning", "message"]


async def test_reasoning_effort_none_turns_thinking_off(fake: FakeServer) -> None:
    fake.script.chat_template = (
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}NO-THINK{% endif %}"
    )
    await create(fake, input="Hi", reasoning={"effort": "minimal"})
    assert fake.engine.prompts[-1].endswith("NO-THINK")
    await create(fake, input="Hi", reasoning={"effort": "high"})
    assert not fake.engine.prompts[-1].endswith("NO-THINK")


# --- structured output and tools -------------------------------------------------------------------------


async def test_json_schema_and_json_object_formats_apply_their_grammar(fake: FakeServer) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "name": "num", "schema": schema, "strict": True}
    doc = await create(fake, input="Hi", text={"format": fmt})
    assert fake.engine.params[-1].grammar == schema_to_grammar(schema)
    assert doc["text"]["format"]["type"] == "json_schema" and doc["text"]["format"]["schema"] == schema
    await create(fake, input="Hi", text={"format": {"type": "json_object"}})
    assert fake.engine.params[-1].grammar == JSON_OBJECT_GRAMMAR
    await create(fake, input="Hi", text={"format": {"type": "text"}})
    assert fake.engine.params[-1].grammar is None


async def test_a_function_call_item_then_its_output_round_trip(fake: FakeServer) -> None:
    fake.script.replies = [CALL, "It is sunny."]
    doc = await create(fake, input="Weather in Paris?", tools=[WEATHER], tool_choice="required")
    (call,) = doc["output"]
    assert call["type"] == "function_call" and call["id"].startswith("fc_")
    assert call["call_id"].startswith("call_") and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"} and call["status"] == "completed"
    assert doc["tools"] == [{**WEATHER, "strict": True}]
    assert fake.engine.params[-1].grammar is not None  # the call is constrained to the tool's schema
    follow = await create(
        fake,
        previous_response_id=doc["id"],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 25C"}],
        tools=[WEATHER],
    )
    assert follow["output"][0]["content"][0]["text"] == "It is sunny."
    prompt = fake.engine.prompts[-1]
    assert "Weather in Paris?" in prompt and "get_weather" in prompt and "sunny, 25C" in prompt


async def test_a_streamed_function_call_has_argument_deltas(fake: FakeServer) -> None:
    fake.script.replies = [CALL]
    events = await stream(
        fake, input="Weather?", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}
    )
    names = [n for n, _ in events]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert events[2][1]["item"]["type"] == "function_call" and events[2][1]["item"]["arguments"] == ""
    deltas = "".join(d["delta"] for n, d in events if n == "response.function_call_arguments.delta")
    (done,) = [d for n, d in events if n == "response.function_call_arguments.done"]
    assert json.loads(deltas) == json.loads(done["arguments"]) == {"city": "Paris"}
    assert done["name"] == "get_weather"
    assert names[-2:] == ["response.output_item.done", "response.completed"]
    assert [i["type"] for i in events[-1][1]["response"]["output"]] == ["function_call"]


async def test_input_items_of_every_kind_become_the_conversation(fake: FakeServer) -> None:
    items = [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Q1"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A1"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hidden"}]},
        {"role": "user", "content": "Q1b"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"X"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "rainy"},
        {"role": "user", "content": "Q2"},
    ]
    doc = await create(fake, input=items, tools=[WEATHER])
    prompt = fake.engine.prompts[-1]
    order = [
        prompt.index(s) for s in ("Rules.", "Q1", "A1", "Q1b", '"arguments": {"city": "X"}', "rainy", "Q2")
    ]
    assert order == sorted(order) and "hidden" not in prompt
    listed = (await fake.client.get(f"{URL}/{doc['id']}/input_items?order=asc")).json()
    assert [i["type"] for i in listed["data"]] == [
        "message",
        "message",
        "message",
        "reasoning",
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert all(i["id"] for i in listed["data"])


# --- state: previous_response_id and the store -----------------------------------------------------------


async def test_previous_response_id_continues_the_exact_conversation(fake: FakeServer) -> None:
    fake.script.replies = ["First answer.", "Second answer."]
    first = await create(fake, input="One", instructions="Old rules.")
    prompt1 = fake.engine.prompts[-1]
    second = await create(fake, input="Two", previous_response_id=first["id"], instructions="New rules.")
    prompt2 = fake.engine.prompts[-1]
    # the answer rendered exactly as generated, so the engine can reuse the first turn's tokens
    tail = prompt1.split("Old rules.", 1)[1]
    assert prompt2.startswith("<|im_start|>system\nNew rules.") and "Old rules." not in prompt2
    assert tail + "First answer.<|im_end|>\n<|im_start|>user\nTwo<|im_end|>" in prompt2
    assert second["previous_response_id"] == first["id"]
    third = await create(fake, input="Three", previous_response_id=second["id"])
    prompt3 = fake.engine.prompts[-1]
    assert (
        prompt3.index("One") < prompt3.index("First answer.") < prompt3.index("Two") < prompt3.index("Three")
    )
    items = (await fake.client.get(f"{URL}/{third['id']}/input_items")).json()["data"]
    assert [i["content"][0]["text"] for i in items] == ["Three"]  # its own input only


async def test_unknown_previous_response_id_is_a_404_naming_the_field(fake: FakeServer) -> None:
    r = await fake.client.post(URL, json={"model": MODEL, "input": "Hi", "previous_response_id": "resp_nope"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["param"] == "previous_response_id" and "resp_nope" in err["message"]
    assert err["type"] == "invalid_request_error"


async def test_store_false_is_not_retrievable(fake: FakeServer) -> None:
    doc = await create(fake, input="Hi", store=False)
    assert doc["store"] is False
    for r in (
        await fake.client.get(f"{URL}/{doc['id']}"),
        await fake.client.post(URL, json={"model": MODEL, "input": "x", "previous_response_id": doc["id"]}),
    ):
        assert r.status_code == 404 and r.json()["error"]["message"]
    events = await stream(fake, input="Hi", store=False)
    assert (await fake.client.get(f"{URL}/{events[-1][1]['response']['id']}")).status_code == 404


async def test_get_delete_and_input_items_paging(fake: FakeServer) -> None:
    items = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    doc = await create(fake, input=items)
    page = (await fake.client.get(f"{URL}/{doc['id']}/input_items?limit=2")).json()
    assert [i["content"][0]["text"] for i in page["data"]] == ["m4", "m3"]  # desc by default
    assert page["has_more"] is True and page["first_id"] == page["data"][0]["id"]
    rest = (await fake.client.get(f"{URL}/{doc['id']}/input_items?limit=5&after={page['last_id']}")).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["m2", "m1", "m0"] and rest["has_more"] is False
    asc = (await fake.client.get(f"{URL}/{doc['id']}/input_items?order=asc&limit=1")).json()
    assert asc["data"][0]["content"][0]["text"] == "m0"
    for bad in ("order=up", "limit=0", "limit=x", "after=nope"):
        r = await fake.client.get(f"{URL}/{doc['id']}/input_items?{bad}")
        assert r.status_code == 400 and r.json()["error"]["message"]
    assert (await fake.client.delete(f"{URL}/{doc['id']}")).status_code == 200
    for r in (
        await fake.client.get(f"{URL}/{doc['id']}"),
        await fake.client.delete(f"{URL}/{doc['id']}"),
        await fake.client.get(f"{URL}/{doc['id']}/input_items"),
    ):
        assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


async def test_stored_responses_expire_after_the_ttl(fake: FakeServer) -> None:
    now = [1000.0]
    store = store_of(fake.app.state)
    store.clock = lambda: now[0]
    doc = await create(fake, input="Hi")
    now[0] += store.ttl_s - 1
    assert (await fake.client.get(f"{URL}/{doc['id']}")).status_code == 200
    now[0] += 2
    assert (await fake.client.get(f"{URL}/{doc['id']}")).status_code == 404
    r = await fake.client.post(URL, json={"model": MODEL, "input": "x", "previous_response_id": doc["id"]})
    assert r.status_code == 404
    assert len(store) == 0 and store.bytes == 0


def test_the_store_is_bounded_in_count_and_in_bytes() -> None:
    def put(store: ResponseStore, rid: str, pad: int = 0) -> bool:
        return store.put({"id": rid, "pad": "x" * pad}, [], [])

    store = ResponseStore(max_entries=3, max_bytes=10_000)
    for i in range(5):
        assert put(store, f"r{i}")
    assert [store.get(f"r{i}") is not None for i in range(5)] == [False, False, True, True, True]
    assert len(store) == 3
    store = ResponseStore(max_entries=100, max_bytes=1000)
    for i in range(5):
        put(store, f"r{i}", 300)
    assert store.bytes <= 1000 and store.get("r4") is not None and store.get("r0") is None
    assert not put(store, "huge", 2000) and store.get("huge") is None  # larger than the store: not kept
    assert store.delete("r4") and not store.delete("r4")
    put(store, "r3", 10)  # the same id again: replaced, counted once
    assert sum(1 for i in range(5) if store.get(f"r{i}")) == len(store)


async def test_each_app_has_its_own_store(fake: FakeServer, tmp_path: Path) -> None:
    other = FakeServer(tmp_path / "other")
    try:
        doc = await create(fake, input="Hi")
        assert (await other.client.get(f"{URL}/{doc['id']}")).status_code == 404
    finally:
        await other.close()


async def test_input_tokens_counts_the_rendered_prompt(fake: FakeServer) -> None:
    body = {"model": MODEL, "input": "Hello there", "instructions": "Be kind.", "tools": [WEATHER]}
    counted = (await fake.client.post(f"{URL}/input_tokens", json=body)).json()
    created = await create(fake, **{k: v for k, v in body.items() if k != "model"})
    assert counted["input_tokens"] == created["usage"]["input_tokens"] > 0
    alone = {"model": MODEL, "input": "More"}
    chained = {**alone, "previous_response_id": created["id"]}
    n_alone, n_chained = [
        (await fake.client.post(f"{URL}/input_tokens", json=b)).json()["input_tokens"]
        for b in (alone, chained)
    ]
    assert n_chained > n_alone  # the earlier turns count too


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "Hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": "Hi", "tools": [1]}, "tools[0]"),
        ({"input": "Hi", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"input": "Hi", "tool_choice": "sometimes"}, "tool_choice"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"content": "no role or type"}]}, "input[0].type"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "input[0].output"),
        ({"input": [5]}, "input[0]"),
        ({"input": []}, "input"),
        ({}, "input"),
        ({"input": "Hi", "text": {"format": {"type": "json_schema"}}}, "text.format.schema"),
        ({"input": "Hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "Hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"input": "Hi", "truncation": "sometimes"}, "truncation"),
        ({"input": "Hi", "max_output_tokens": -1}, "max_output_tokens"),
        ({"input": "Hi", "metadata": {"k": 1}}, "metadata[...]"),
        ({"input": "Hi", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"input": "Hi", "background": True}, "background"),
        ({"input": "Hi", "conversation": "conv_1"}, "conversation"),
        ({"input": "Hi", "temperature": "hot"}, "temperature"),
        ({"input": "Hi", "temperature": -1}, "temperature"),
        ({"input": {"a": 1}}, "input"),
        ({"model": "", "input": "Hi"}, "model"),
    ],
)
async def test_bad_input_is_a_400_in_openais_shape(
    fake: FakeServer, body: dict[str, Any], param: str
) -> None:
    r = await fake.client.post(URL, json={"model": MODEL, **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    assert err["param"] == param, err


async def test_malformed_and_deeply_nested_bodies_are_400s(fake: FakeServer) -> None:
    deep = b'{"model": "%s", "input": ' % MODEL.encode() + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for body in (b"", b"{", b"[1]", b'"x"', deep):
        r = await fake.client.post(URL, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (body[:40], r.text)
        assert r.json()["error"]["message"]
    r = await fake.client.post(URL, json={"model": "ai/none", "input": "Hi"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


json_values = json_values_of()
items = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "x"]),
        "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
        "content": st.text(max_size=10) | json_values,
        "call_id": st.text(max_size=5) | json_values,
        "name": st.text(max_size=5),
        "arguments": st.text(max_size=10) | json_values,
        "output": st.text(max_size=10) | json_values,
        "summary": json_values,
    },
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "ai/none", "", 5])},
    optional={
        "input": st.text(max_size=10) | st.lists(items, max_size=3) | json_values,
        "instructions": st.text(max_size=10) | json_values,
        "tools": st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["function", "x"])},
                optional={"name": st.text(max_size=5), "parameters": json_values},
            ),
            max_size=2,
        )
        | json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required", {"type": "function", "name": "f"}])
        | json_values,
        "text": st.fixed_dictionaries(
            {
                "format": st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "json_object", "json_schema", "x"])},
                    optional={"schema": json_values},
                )
            }
        )
        | json_values,
        "reasoning": json_values,
        "max_output_tokens": st.integers(-2, 4) | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "stream": st.booleans() | json_values,
        "store": st.booleans() | json_values,
        "previous_response_id": st.text(max_size=8) | json_values,
        "metadata": json_values,
        "truncation": st.sampled_from(["auto", "disabled", "x"]) | json_values,
        "include": json_values,
        "parallel_tool_calls": json_values,
    },
)


def test_fuzz_request_bodies_never_5xx(tmp_path: Path) -> None:
    """Whatever the body, a 4xx in OpenAI's shape or a 200 (never a 5xx), and the server keeps answering."""
    loop = asyncio.new_event_loop()
    srv = FakeServer(tmp_path)
    srv.script.replies = ["ok"]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies)
    def check(body: dict[str, Any]) -> None:
        for path in (URL, f"{URL}/input_tokens"):
            r = loop.run_until_complete(srv.client.post(path, json=body))
            assert r.status_code < 500, (path, r.status_code, r.text)
            if r.status_code >= 400:
                assert r.json()["error"]["message"]

    try:
        check()
        r = loop.run_until_complete(srv.client.post(URL, json={"model": MODEL, "input": "Hi"}))
        assert r.status_code == 200
    finally:
        loop.run_until_complete(srv.close())
        loop.close()
