"""Fast tier: Ollama's `/api/*` over the in-process app and the scripted FakeEngine (fake_server.py).

The NDJSON bytes are checked where Ollama's clients depend on them: one compact object per line, the
final chunk's `done_reason` and timings, tool calls as whole objects with object arguments, errors as
`{"error": "..."}` (an HTTP status before the stream, a line after it)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmr.engine.protocol import Capabilities
from dmr.server.ollama.models import OLLAMA_VERSION, ProgressStatus

from .fake_server import MODEL, FakeServer, write_tiny_gguf
from .strategies import json_values as json_values_of

pytestmark = [
    pytest.mark.fast,
    # the hypothesis plugin imports mypy_extensions while reporting a failure; never let that hide it
    pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict:DeprecationWarning"),
]

HELLO = [{"role": "user", "content": "Hi"}]
REPLY = "Hello from the fake engine."
TIMINGS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'


def _lines(body: bytes) -> list[dict[str, Any]]:
    text = body.decode()
    assert text.endswith("\n")
    return [json.loads(x) for x in text.splitlines()]


def _records(doc: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rec for group in doc for rec in group["records"]]


def _check_final(doc: dict[str, Any], reason: str = "stop") -> None:
    assert doc["done"] is True and doc["done_reason"] == reason
    for name in TIMINGS:
        assert isinstance(doc[name], int) and doc[name] >= 0, name
    assert doc["total_duration"] >= doc["prompt_eval_duration"] + doc["eval_duration"]
    assert doc["total_duration"] >= doc["load_duration"] > 0


# --- chat ------------------------------------------------------------------------------------------------


async def test_chat_streams_ndjson_deltas_then_a_final_chunk_with_timings(fake: FakeServer) -> None:
    fake.script.replies = ["ab"]
    r = await fake.raw("POST", "/api/chat", {"model": MODEL, "messages": HELLO})  # streams by default
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    body = r.body.decode()
    assert '"message":{"role":"assistant","content":"a"},"done":false}\n' in body  # compact, one per line
    chunks = _lines(r.body)
    assert [c["message"]["content"] for c in chunks] == ["a", "b", ""]
    for c in chunks[:-1]:
        assert set(c) == {"model", "created_at", "message", "done"} and c["done"] is False
        assert c["model"] == MODEL and c["created_at"].endswith("Z")
    final = chunks[-1]
    _check_final(final)
    assert final["message"] == {"role": "assistant", "content": ""}
    prompt = fake.engine.prompts[-1]
    assert final["prompt_eval_count"] == len(prompt.encode()) + 1  # byte tokenizer + BOS
    assert final["eval_count"] == 2


async def test_chat_not_streamed_is_one_object_and_recorded_as_ollama(fake: FakeServer) -> None:
    r = await fake.client.post("/api/chat", json={"model": MODEL, "messages": HELLO, "stream": False})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["message"] == {"role": "assistant", "content": REPLY}
    assert doc["eval_count"] == len(REPLY)
    _check_final(doc)
    recs = _records((await fake.client.get("/engines/requests")).json())
    (rec,) = [x for x in recs if x["url"] == "/api/chat"]
    assert rec["dialect"] == "ollama" and rec["status_code"] == 200
    assert json.loads(rec["response"])["message"]["content"] == REPLY


async def test_streamed_chat_is_recorded_with_the_whole_answer(fake: FakeServer) -> None:
    await fake.raw("POST", "/api/chat", {"model": MODEL, "messages": HELLO})
    (rec,) = _records((await fake.client.get("/engines/requests")).json())
    assert rec["dialect"] == "ollama"
    assert json.loads(rec["response"])["message"]["content"] == REPLY
    assert fake.loader.runners[next(iter(fake.loader.runners))].in_use == 0


async def test_model_names_resolve_as_ollama_clients_send_them(fake: FakeServer) -> None:
    for name in ("fake", "ai/fake", "ai/fake:latest", "docker.io/ai/fake:latest"):
        r = await fake.client.post("/api/chat", json={"model": name, "messages": HELLO, "stream": False})
        assert r.status_code == 200, (name, r.text)
        assert r.json()["model"] == name  # the name the client used comes back


async def test_options_reach_the_sampler(fake: FakeServer) -> None:
    options = {
        "temperature": 0.3,
        "top_k": 7,
        "top_p": 0.8,
        "min_p": 0.05,
        "seed": 42,
        "stop": ["fake"],
        "repeat_penalty": 1.2,
        "repeat_last_n": 33,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "num_predict": 100,
        "num_gpu": 99,  # a load knob Ollama's clients send: typed, accepted, not applied per request
    }
    body = {"model": MODEL, "messages": HELLO, "stream": False, "options": options}
    doc = (await fake.client.post("/api/chat", json=body)).json()
    p = fake.engine.params[-1]
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.seed) == (0.3, 7, 0.8, 0.05, 42)
    penalties = (p.repeat_penalty, p.penalty_last_n, p.presence_penalty, p.frequency_penalty)
    assert penalties == (1.2, 33, 0.5, 0.25)
    assert p.max_tokens == 100 and p.stop[0] == "fake"
    assert doc["message"]["content"] == "Hello from the "


async def test_num_predict_ends_with_length(fake: FakeServer) -> None:
    body = {"model": MODEL, "messages": HELLO, "options": {"num_predict": 3}}
    chunks = _lines((await fake.raw("POST", "/api/chat", body)).body)
    assert "".join(c["message"]["content"] for c in chunks) == "Hel"
    _check_final(chunks[-1], "length")
    doc = (await fake.client.post("/api/generate", json={**body, "prompt": "x", "stream": False})).json()
    assert doc["done_reason"] == "length" and doc["response"] == "Hel"


async def test_num_ctx_configures_the_model_only_when_it_differs(fake: FakeServer) -> None:
    body = {"model": MODEL, "messages": HELLO, "stream": False, "options": {"num_ctx": 1024}}
    assert (await fake.client.post("/api/chat", json=body)).status_code == 200
    assert len(fake.load_kwargs) == 1
    n_slots = fake.load_kwargs[0]["n_slots"]
    assert fake.load_kwargs[0]["n_ctx"] == 1024 * n_slots
    assert fake.scheduler.runner_config(next(iter(fake.loader.runners))).context_size == 1024
    assert (await fake.client.post("/api/chat", json=body)).status_code == 200
    assert len(fake.load_kwargs) == 1  # the same context: no reload
    body["options"] = {"num_ctx": 2048}
    assert (await fake.client.post("/api/chat", json=body)).status_code == 200
    assert len(fake.load_kwargs) == 2 and fake.load_kwargs[1]["n_ctx"] == 2048 * n_slots


async def test_format_json_and_schema_are_enforced_by_a_grammar(fake: FakeServer) -> None:
    fake.script.replies = ['{"a": 1}']
    for fmt in ("json", {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}):
        body = {"model": MODEL, "messages": HELLO, "stream": False, "format": fmt}
        doc = (await fake.client.post("/api/chat", json=body)).json()
        assert json.loads(doc["message"]["content"]) == {"a": 1}
        assert fake.engine.params[-1].grammar
    body = {"model": MODEL, "messages": HELLO, "stream": False, "format": ""}
    assert (await fake.client.post("/api/chat", json=body)).status_code == 200
    assert not fake.engine.params[-1].grammar


async def test_thinking_goes_to_message_thinking_and_think_false_turns_it_off(fake: FakeServer) -> None:
    fake.script.replies = ["<think>plan it</think>The answer."]
    body: dict[str, Any] = {"model": MODEL, "messages": HELLO, "stream": False}
    doc = (await fake.client.post("/api/chat", json=body)).json()
    assert doc["message"] == {"role": "assistant", "content": "The answer.", "thinking": "plan it"}
    chunks = _lines((await fake.raw("POST", "/api/chat", {"model": MODEL, "messages": HELLO})).body)
    assert "".join(c["message"].get("thinking", "") for c in chunks) == "plan it"
    assert "".join(c["message"]["content"] for c in chunks) == "The answer."
    gen = {"model": MODEL, "prompt": "x", "stream": False}
    doc = (await fake.client.post("/api/generate", json=gen)).json()
    assert (doc["thinking"], doc["response"]) == ("plan it", "The answer.")
    # think: false renders the template with enable_thinking false (Qwen3-style switch)
    fake.script.chat_template = (
        "{% for m in messages %}{{ m.content }}{% endfor %}{% if enable_thinking is defined and not "
        "enable_thinking %}NO-THINK{% endif %}"
    )
    fake.script.replies = ["ok"]
    fake.scheduler.loader.runners.clear()
    fake.app.state.dmr.templates.clear()
    body["think"] = False
    assert (await fake.client.post("/api/chat", json=body)).status_code == 200
    assert fake.engine.prompts[-1].endswith("NO-THINK")
    bad = await fake.client.post("/api/chat", json={**body, "think": "very"})
    assert bad.status_code == 400 and "think" in bad.json()["error"]


async def test_tool_call_arrives_as_one_whole_object_with_object_arguments(fake: FakeServer) -> None:
    fake.script.replies = [CALL]
    fake.script.piece_size = 3  # the model writes it in fragments
    body = {"model": MODEL, "messages": HELLO, "tools": TOOLS}
    chunks = _lines((await fake.raw("POST", "/api/chat", body)).body)
    calls = [c for c in chunks if c["message"].get("tool_calls")]
    assert len(calls) == 1, chunks
    (call,) = calls[0]["message"]["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    assert call["id"]
    assert all(c["message"]["content"] == "" for c in chunks)
    _check_final(chunks[-1])
    doc = (await fake.client.post("/api/chat", json={**body, "stream": False})).json()
    assert doc["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert doc["done_reason"] == "stop"


async def test_tool_history_with_object_arguments_and_tool_name_reach_the_template(fake: FakeServer) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny, 21C", "tool_name": "get_weather"},
    ]
    body = {"model": MODEL, "messages": messages, "tools": TOOLS, "stream": False}
    r = await fake.client.post("/api/chat", json=body)
    assert r.status_code == 200, r.text
    prompt = fake.engine.prompts[-1]
    assert '"city": "Paris"' in prompt and "sunny, 21C" in prompt


async def test_ollama_client_over_the_app(fake: FakeServer, tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=fake.app)
    client = ollama.AsyncClient(host="http://localhost:12434", transport=transport)
    try:
        out = await client.chat(model="fake", messages=HELLO)
        assert out.message.content == REPLY and out.done_reason == "stop"
        stream = await client.chat(model="fake", messages=HELLO, stream=True)
        parts = [p.message.content async for p in stream]
        assert "".join(x or "" for x in parts) == REPLY
        fake.script.reply = lambda prompt: CALL  # the engine is loaded: its reply cycle is fixed
        out = await client.chat(model="fake", messages=HELLO, tools=TOOLS)
        assert out.message.tool_calls and out.message.tool_calls[0].function.arguments == {"city": "Paris"}
        listed = await client.list()
        assert [m.model for m in listed.models] == [MODEL]
        shown = await client.show("fake")
        assert shown.details is not None and shown.details.family == "llama"
        emb = await client.embed(model="fake", input=["a", "b"])
        assert len(emb.embeddings) == 2
        with pytest.raises(ollama.ResponseError) as exc:
            await client.chat(model="nope", messages=HELLO)
        assert exc.value.status_code == 404 and exc.value.error == "model 'nope' not found"
    finally:
        await client._client.aclose()


# --- generate ---------------------------------------------------------------------------------------------


async def test_generate_streams_response_chunks_with_the_template_and_system(fake: FakeServer) -> None:
    fake.script.replies = ["ab"]
    body = {"model": MODEL, "prompt": "Why?", "system": "Be brief."}
    r = await fake.raw("POST", "/api/generate", body)
    chunks = _lines(r.body)
    assert [c["response"] for c in chunks] == ["a", "b", ""]
    assert set(chunks[0]) == {"model", "created_at", "response", "done"}
    _check_final(chunks[-1])
    assert "context" not in chunks[-1]  # only raw prompts continue from a context
    prompt = fake.engine.prompts[-1]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in prompt and "<|im_start|>user\nWhy?" in prompt


async def test_generate_raw_sends_the_prompt_as_is_and_returns_a_context(fake: FakeServer) -> None:
    fake.script.replies = ["ok"]
    body = {"model": MODEL, "prompt": "RAW PROMPT", "raw": True, "stream": False}
    doc = (await fake.client.post("/api/generate", json=body)).json()
    assert fake.engine.prompts[-1] == "RAW PROMPT"
    assert doc["response"] == "ok"
    assert doc["context"] == [256, *b"RAW PROMPT", *b"ok"]
    body = {**body, "prompt": " more", "context": doc["context"]}
    doc = (await fake.client.post("/api/generate", json=body)).json()
    assert fake.engine.prompts[-1] == "RAW PROMPTok more"
    chunks = _lines((await fake.raw("POST", "/api/generate", {**body, "stream": True})).body)
    assert chunks[-1]["context"][-2:] == list(b"ok")


async def test_generate_refuses_suffix_template_and_images_clearly(fake: FakeServer) -> None:
    cases = [
        ({"suffix": "end"}, "does not support insert"),
        ({"template": "{{ .Prompt }}"}, "template overrides are not supported"),
        ({"images": ["aGVsbG8="]}, "does not support images"),
    ]
    for extra, text in cases:
        r = await fake.client.post("/api/generate", json={"model": MODEL, "prompt": "x", **extra})
        assert r.status_code == 400 and text in r.json()["error"], r.text
    msgs = [{"role": "user", "content": "look", "images": ["aGVsbG8="]}]
    r = await fake.client.post("/api/chat", json={"model": MODEL, "messages": msgs})
    assert r.status_code == 400 and "does not support images" in r.json()["error"]
    assert all(r.in_use == 0 for r in fake.loader.runners.values())


async def test_images_are_not_refused_for_the_capability_check_when_the_engine_has_vision(
    fake: FakeServer,
) -> None:
    fake.script.capabilities = Capabilities(vision=True)
    body = {"model": MODEL, "prompt": "x", "images": ["aGVsbG8="], "stream": False}
    assert (await fake.client.post("/api/generate", json=body)).status_code == 200


# --- load and unload --------------------------------------------------------------------------------------


async def test_empty_messages_load_and_keep_alive_zero_unloads(fake: FakeServer) -> None:
    for path, field in (("/api/chat", "messages"), ("/api/generate", "prompt")):
        empty: list[Any] | str = [] if field == "messages" else ""
        r = await fake.client.post(path, json={"model": MODEL, field: empty})
        doc = r.json()
        assert r.status_code == 200 and doc["done"] is True and doc["done_reason"] == "load", doc
        assert len(fake.loader.runners) == 1
        r = await fake.client.post(path, json={"model": MODEL, field: empty, "keep_alive": 0})
        assert r.json()["done_reason"] == "unload"
        assert not fake.loader.runners
    n = len(fake.engines)
    r = await fake.client.post("/api/chat", json={"model": MODEL, "keep_alive": "0s"})
    assert r.json()["done_reason"] == "unload" and len(fake.engines) == n  # nothing loaded to unload it
    recs = _records((await fake.client.get("/engines/requests")).json())
    assert {x["dialect"] for x in recs} == {"ollama"} and len(recs) == 5


async def test_keep_alive_sets_the_models_expiry(fake: FakeServer) -> None:
    body = {"model": MODEL, "messages": HELLO, "stream": False}
    await fake.client.post("/api/chat", json={**body, "keep_alive": -1})
    (runner,) = fake.loader.runners.values()
    assert runner.spec.keep_alive_s == -1 and runner.expires_at() is None
    await fake.client.post("/api/chat", json={**body, "keep_alive": "10m"})
    assert runner.spec.keep_alive_s == 600
    ps = (await fake.client.get("/api/ps")).json()["models"]
    assert ps[0]["name"] == MODEL and ps[0]["context_length"] == 4096 and ps[0]["expires_at"].endswith("Z")
    await fake.client.post("/api/chat", json=body)  # none given: the server's default again
    assert runner.spec.keep_alive_s == fake.scheduler.default_keep_alive
    await fake.client.post("/api/chat", json={**body, "keep_alive": 0})
    for _ in range(20):
        if not fake.loader.runners:
            break
        await asyncio.sleep(0.01)
    assert not fake.loader.runners  # unloaded once the request released it
    bad = await fake.client.post("/api/chat", json={**body, "keep_alive": "soon"})
    assert bad.status_code == 400 and "keep_alive" in bad.json()["error"]


# --- errors -----------------------------------------------------------------------------------------------


async def test_bad_requests_get_ollamas_error_shape_and_a_4xx(fake: FakeServer) -> None:
    deep = b'{"model":"x","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases: list[tuple[str, Any, int]] = [
        ("/api/chat", b"{not json", 400),
        ("/api/chat", b"", 400),
        ("/api/chat", deep, 400),
        ("/api/chat", {"messages": HELLO}, 400),
        ("/api/chat", {"model": "ai/none", "messages": HELLO}, 404),
        ("/api/chat", {"model": MODEL, "messages": "hi"}, 400),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "x", "content": "a"}]}, 400),
        ("/api/chat", {"model": MODEL, "messages": HELLO, "options": {"temperature": "hot"}}, 400),
        ("/api/chat", {"model": MODEL, "messages": HELLO, "options": {"temperature": -1}}, 400),
        ("/api/chat", {"model": MODEL, "messages": HELLO, "options": {"num_predict": -7}}, 400),
        ("/api/chat", {"model": MODEL, "messages": HELLO, "options": {"num_ctx": 0}}, 400),
        ("/api/chat", {"model": MODEL, "messages": HELLO, "format": "yaml"}, 400),
        ("/api/chat", {"model": MODEL, "messages": HELLO, "tools": [{"type": "function"}]}, 400),
        ("/api/generate", {"model": MODEL, "prompt": 5}, 400),
        ("/api/generate", {"model": MODEL, "prompt": "x", "raw": True, "context": [-1]}, 400),
        ("/api/embed", {"model": MODEL, "input": [""]}, 400),
        ("/api/embed", {"model": MODEL, "input": "a", "dimensions": 999}, 400),
        ("/api/show", {"model": "ai/none"}, 404),
        ("/api/show", [1], 400),
    ]
    for path, body, status in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = await fake.client.post(path, content=content)
        assert r.status_code == status, (path, body if not isinstance(body, bytes) else body[:40], r.text)
        err = r.json()
        assert set(err) == {"error"} and isinstance(err["error"], str) and err["error"], err
    r = await fake.client.post("/api/chat", json={"model": "ai/none", "messages": HELLO})
    assert r.json() == {"error": "model 'ai/none' not found"}
    assert all(r.in_use == 0 for r in fake.loader.runners.values())


async def test_a_failure_mid_stream_is_an_error_line(fake: FakeServer) -> None:
    fake.script.fail_after = 2
    chunks = _lines((await fake.raw("POST", "/api/chat", {"model": MODEL, "messages": HELLO})).body)
    assert [c["message"]["content"] for c in chunks[:2]] == ["H", "e"]
    assert set(chunks[-1]) == {"error"} and "mid-stream" in chunks[-1]["error"]
    (rec,) = _records((await fake.client.get("/engines/requests")).json())
    assert rec["dialect"] == "ollama" and rec["status_code"] >= 500


async def test_a_client_leaving_mid_stream_aborts_the_generation(fake: FakeServer) -> None:
    fake.script.delay_s = 0.01
    fake.script.replies = ["x" * 200]
    r = await fake.raw("POST", "/api/chat", {"model": MODEL, "messages": HELLO}, disconnect_after=3)
    assert len(r.chunks) == 3
    assert fake.engine.aborts == 1 and fake.engine.active == 0


json_values = json_values_of()
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"])},
        optional={
            "content": st.text(max_size=20) | json_values,
            "images": json_values,
            "tool_calls": st.just([{"function": {"name": "f", "arguments": {"a": 1}}}]) | json_values,
            "tool_name": json_values,
        },
    ),
    max_size=3,
)
options = st.fixed_dictionaries(
    {},
    optional={
        "num_predict": st.integers(-3, 3) | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "top_k": st.integers(-3, 100) | json_values,
        "seed": st.integers(-(2**65), 2**65),
        "stop": json_values,
        "num_ctx": st.integers(-2, 5000) | json_values,
        "repeat_last_n": st.integers(-3, 3),
    },
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "fake", "ai/none", "", 5, None])},
    optional={
        "messages": messages | json_values,
        "prompt": st.text(max_size=20) | json_values,
        "system": st.text(max_size=10) | json_values,
        "raw": st.booleans() | json_values,
        "stream": st.booleans() | json_values,
        "format": st.sampled_from(["json", "", "x", {"type": "object"}]) | json_values,
        "options": options | json_values,
        "keep_alive": st.sampled_from(["5m", 0, -1, "x", "1h30m"]) | json_values,
        "think": st.sampled_from([True, False, "low", "x"]) | json_values,
        "tools": st.just(TOOLS) | json_values,
        "context": st.lists(st.integers(-2, 300), max_size=3) | json_values,
        "images": json_values,
        "suffix": json_values,
    },
)


def test_fuzz_chat_and_generate_bodies_never_answer_5xx(tmp_path: Path) -> None:
    """Whatever the body, /api/chat and /api/generate answer below 500 in Ollama's error shape."""
    loop = asyncio.new_event_loop()

    async def make() -> FakeServer:
        return FakeServer(tmp_path)

    srv = loop.run_until_complete(make())
    srv.script.replies = ["ok"]

    async def check(path: str, body: dict[str, Any]) -> None:
        if isinstance(body.get("options"), dict) and isinstance(body["options"].get("num_ctx"), int):
            body["options"]["num_ctx"] = max(1, min(4096, body["options"]["num_ctx"]))  # no 10^20 loads
        r = await srv.client.post(path, json=body)
        assert r.status_code < 500, (path, body, r.status_code, r.text)
        if r.status_code >= 400:
            assert isinstance(r.json()["error"], str)
        assert all(x.in_use == 0 for x in srv.loader.runners.values())

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/api/chat", "/api/generate"]), body=bodies)
    def run(path: str, body: dict[str, Any]) -> None:
        loop.run_until_complete(check(path, body))

    try:
        run()
    finally:
        loop.run_until_complete(srv.close())
        loop.close()


# --- embeddings -------------------------------------------------------------------------------------------


async def test_embed_and_the_legacy_embeddings_route(fake: FakeServer) -> None:
    doc = (await fake.client.post("/api/embed", json={"model": MODEL, "input": ["a", "b"]})).json()
    assert doc["model"] == MODEL and len(doc["embeddings"]) == 2 and len(doc["embeddings"][0]) == 16
    assert abs(sum(x * x for x in doc["embeddings"][0]) - 1) < 1e-5
    assert doc["prompt_eval_count"] == 4 and doc["total_duration"] >= doc["load_duration"] > 0
    one = (await fake.client.post("/api/embed", json={"model": MODEL, "input": "a", "dimensions": 4})).json()
    assert len(one["embeddings"][0]) == 4 and abs(sum(x * x for x in one["embeddings"][0]) - 1) < 1e-5
    empty = (await fake.client.post("/api/embed", json={"model": MODEL, "input": []})).json()
    assert empty["embeddings"] == []
    legacy = (await fake.client.post("/api/embeddings", json={"model": MODEL, "prompt": "a"})).json()
    assert set(legacy) == {"embedding"} and len(legacy["embedding"]) == 16
    fake.script.n_ctx = 4
    cut = await fake.client.post("/api/embed", json={"model": MODEL, "input": "abcdefgh"})
    assert cut.status_code == 200 and cut.json()["prompt_eval_count"] == 4
    r = await fake.client.post("/api/embed", json={"model": MODEL, "input": "abcdefgh", "truncate": False})
    assert r.status_code == 400 and "context length" in r.json()["error"]


# --- model management -------------------------------------------------------------------------------------


async def test_version_tags_and_show(fake: FakeServer) -> None:
    assert (await fake.client.get("/api/version")).json() == {"version": OLLAMA_VERSION}
    assert (await fake.client.head("/api/version")).status_code == 200
    fake.store.tag(MODEL, "ai/fake:v2")
    models = (await fake.client.get("/api/tags")).json()["models"]
    assert sorted(m["name"] for m in models) == [MODEL, "ai/fake:v2"]
    m = models[0]
    assert set(m) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert m["size"] > 0 and len(m["digest"]) == 64 and m["modified_at"] == "2023-11-14T22:13:20Z"
    assert m["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": m["details"]["parameter_size"],
        "quantization_level": m["details"]["quantization_level"],
    }
    assert (await fake.client.head("/api/tags")).status_code == 200
    doc = (await fake.client.post("/api/show", json={"model": "fake"})).json()
    assert doc["details"]["family"] == "llama" and doc["capabilities"] == ["completion"]
    assert doc["model_info"]["general.architecture"] == "llama"
    assert doc["model_info"]["llama.context_length"] == 4096
    assert doc["modified_at"] == "2023-11-14T22:13:20Z" and doc["modelfile"].startswith("# Modelfile")
    old = (await fake.client.post("/api/show", json={"name": "fake", "verbose": True})).json()  # `name`
    assert old["model_info"]["general.architecture"] == "llama"


async def test_copy_and_delete(fake: FakeServer) -> None:
    r = await fake.client.post("/api/copy", json={"source": "fake", "destination": "ai/twin:1"})
    assert r.status_code == 200
    names = {m["name"] for m in (await fake.client.get("/api/tags")).json()["models"]}
    assert names == {MODEL, "ai/twin:1"}
    r = await fake.client.post("/api/copy", json={"source": "ai/none", "destination": "x"})
    assert r.status_code == 404 and r.json() == {"error": "model 'ai/none' not found"}
    r = await fake.client.request("DELETE", "/api/delete", json={"model": "ai/twin:1"})
    assert r.status_code == 200
    r = await fake.client.request("DELETE", "/api/delete", json={"model": "ai/twin:1"})
    assert r.status_code == 404 and r.json() == {"error": "model 'ai/twin:1' not found"}
    await fake.client.post("/api/chat", json={"model": MODEL, "messages": HELLO, "stream": False})
    assert fake.loader.runners
    assert (await fake.client.request("DELETE", "/api/delete", json={"model": MODEL})).status_code == 200
    assert not fake.loader.runners and (await fake.client.get("/api/tags")).json() == {"models": []}


async def test_blobs_and_create_from_a_gguf(fake: FakeServer, tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "mine.gguf", ctx=2048)
    data = gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await fake.client.head(f"/api/blobs/{digest}")).status_code == 404
    wrong = "sha256:" + "0" * 64
    r = await fake.client.post(f"/api/blobs/{wrong}", content=data)
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"]
    assert (await fake.client.post("/api/blobs/sha256:xyz", content=data)).status_code == 400
    assert (await fake.client.post(f"/api/blobs/{digest}", content=data)).status_code == 201
    assert (await fake.client.head(f"/api/blobs/{digest}")).status_code == 200
    body = {"model": "mine", "files": {"mine.gguf": digest}, "template": "{{ messages[0].content }}!"}
    r = await fake.client.post("/api/create", json=body)
    assert r.status_code == 200
    statuses = [x["status"] for x in _lines(r.content)]
    assert statuses[0] == "parsing GGUF" and statuses[-2:] == ["writing manifest", "success"]
    assert any(s.startswith("using existing layer sha256:") for s in statuses)
    doc = (await fake.client.post("/api/show", json={"model": "mine"})).json()
    assert doc["template"] == "{{ messages[0].content }}!"
    assert doc["model_info"]["llama.context_length"] == 2048
    chat = {"model": "mine", "messages": HELLO, "stream": False}
    assert (await fake.client.post("/api/chat", json=chat)).status_code == 200
    assert fake.engine.prompts[-1] == "Hi!"
    r = await fake.client.post("/api/create", json={"model": "alias", "from": "mine", "stream": False})
    assert r.json() == {"status": "success"}
    ctx = {"model": "mine-ctx", "from": "mine", "parameters": {"num_ctx": 512}, "stream": False}
    assert (await fake.client.post("/api/create", json=ctx)).status_code == 200
    assert fake.store.get("mine-ctx").config["context_size"] == 512
    refused = [
        {"model": "x", "files": {"x.gguf": wrong}},
        {"model": "x", "files": {"../x.gguf": digest}},
        {"model": "x", "from": "mine", "quantize": "q4_K_M"},
        {"model": "x", "from": "mine", "template": "{{ .Prompt }}"},
        {"model": "x", "from": "mine", "parameters": {"temperature": 0.1}},
        {"model": "x"},
        {"model": "Not A Name!", "from": "mine"},
    ]
    for bad in refused:
        r = await fake.client.post("/api/create", json=bad)
        assert 400 <= r.status_code < 500 and r.json()["error"], (bad, r.text)
    assert (await fake.client.post("/api/create", json={"model": "x", "from": "ai/none"})).status_code == 404


async def test_pull_errors_are_an_error_line_when_streamed_and_a_status_when_not(fake: FakeServer) -> None:
    ref = "127.0.0.1:9/ai/nothing:latest"  # nothing listens on port 9 (discard)
    r = await fake.raw("POST", "/api/pull", {"model": ref})
    lines = _lines(r.body)
    assert r.status == 200 and lines[0] == {"status": "pulling manifest"}
    assert set(lines[-1]) == {"error"}
    r2 = await fake.client.post("/api/pull", json={"model": ref, "stream": False, "insecure": True})
    assert r2.status_code >= 400 and set(r2.json()) == {"error"}
    r3 = await fake.client.post("/api/push", json={"model": "ai/none", "stream": False})
    assert r3.status_code == 404


def test_progress_events_become_ollamas_status_lines() -> None:
    pull = ProgressStatus("pull")
    layer = {"id": "sha256:" + "ab" * 32, "size": 10, "current": 4}
    assert pull.convert({"type": "progress", "message": "Downloaded: 4 B", "layer": layer}) == [
        {"status": "pulling abababababab", "digest": layer["id"], "total": 10, "completed": 4}
    ]
    assert [x["status"] for x in pull.convert({"type": "success", "message": "Model pulled"})] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert pull.convert({"type": "progress", "message": "Fetching file list..."}) == [
        {"status": "Fetching file list..."}
    ]
    push = ProgressStatus("push")
    assert push.first() == {"status": "retrieving manifest"}
    assert push.convert({"type": "progress", "layer": layer})[0]["status"] == "pushing abababababab"
    assert [x["status"] for x in push.convert({"type": "success"})] == ["pushing manifest", "success"]
