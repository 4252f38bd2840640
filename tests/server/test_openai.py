"""End to end: the official openai SDK (sync, async, streaming) against a real `dmr serve` and SmolLM2."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import jsonschema
import numpy as np
import openai
import pytest

from dmr import _native

from .conftest import HERMES, MODEL, RERANKER
from .helpers import Server

#: Two requests for the same prompt give the same tokens only on the CPU backend: the second reuses the
#: first's cached prefix and evaluates the rest in other batch shapes, which GPU backends compute with other
#: kernels (tests/engine/conftest.py EXACT). Elsewhere the tests check what holds there: the shape.
EXACT = _native.BACKEND == "cpu"

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 20}},
                "required": ["city"],
            },
        },
    }
]


def test_models_list_and_get(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert MODEL in ids
    m = client.models.retrieve(MODEL)
    assert m.owned_by == "docker"
    dmr = m.model_extra["dmr"]  # type: ignore[index]
    assert dmr["architecture"] == "llama" and dmr["quantization"] == "Q4_1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("ai/nope")


@pytest.mark.parametrize("prefix", ["/engines/v1", "/engines/llama.cpp/v1", "/v1"])
def test_chat_every_prefix_and_reference_form(server: Server, prefix: str) -> None:
    with openai.OpenAI(base_url=server.url + prefix, api_key="dummy", max_retries=0) as c:
        for name in ("smollm2", "ai/smollm2", "docker.io/ai/smollm2:latest"):
            r = c.chat.completions.create(model=name, messages=QUESTION, max_tokens=8, temperature=0)
            assert r.choices[0].message.role == "assistant"
            assert r.choices[0].message.content


def test_chat_usage_is_exact(client: openai.OpenAI, smollm2_path: object) -> None:
    from dmr._native import Model
    from dmr.engine.chat import ChatTemplate

    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    model = Model.load(str(smollm2_path))
    prompt = ChatTemplate(model.chat_template).render(QUESTION)
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(model.tokenize(prompt, add_special=True, parse_special=True))
    assert r.usage.completion_tokens == 12 or r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    kw = {"model": MODEL, "messages": QUESTION, "max_tokens": 16, "temperature": 0}
    whole = client.chat.completions.create(**kw)  # type: ignore[call-overload]
    parts, usage, finish = [], None, None
    for chunk in client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(parts) == whole.choices[0].message.content
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    assert finish == whole.choices[0].finish_reason


def test_sampling_parameters_and_stop(client: openai.OpenAI) -> None:
    def ask() -> Any:
        return client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Count from 1 to 20 separated by commas."}],
            max_completion_tokens=40,
            temperature=0.7,
            top_p=0.9,
            seed=42,
            presence_penalty=0.1,
            frequency_penalty=0.1,
            stop=["7"],
            logit_bias={"1": -1.0},
            extra_body={"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1},
        )

    r = ask()
    assert "7" not in (r.choices[0].message.content or "")
    again = ask()
    assert "7" not in (again.choices[0].message.content or "")
    if EXACT:
        assert again.choices[0].message.content == r.choices[0].message.content  # same seed, same text


async def test_async_concurrent_chats(aclient: openai.AsyncOpenAI) -> None:
    qs = ["What is the capital of Japan?", "What is 2+2?", "Name a colour.", "Who wrote Hamlet?"]
    async with aclient:
        rs = await asyncio.gather(
            *(
                aclient.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": q}], max_tokens=10, temperature=0
                )
                for q in qs
            )
        )
        assert all(r.choices[0].message.content for r in rs)
        stream = await aclient.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=6, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text


def test_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert r.choices[0].text and r.usage is not None and r.usage.completion_tokens <= 5
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == r.choices[0].text
    toks = client.completions.create(model=MODEL, prompt=[504, 3575, 282], max_tokens=3, temperature=0)
    assert toks.usage is not None and toks.usage.prompt_tokens == 3
    batch = client.completions.create(model=MODEL, prompt=["One", "Two"], max_tokens=2, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1]
    long = client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=7, temperature=0, extra_body={"ignore_eos": True}
    )
    assert long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 7  # type: ignore[union-attr]


def test_embeddings(client: openai.OpenAI) -> None:
    texts = [
        "Cats and dogs are popular pets that live with families.",
        "Hamsters are small pets kept in cages.",
        "The stock market fell sharply today as investors worried about inflation.",
    ]
    r = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    v = np.array([d.embedding for d in r.data])
    assert v.shape[0] == 3 and r.usage.prompt_tokens > 0
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    assert v[0] @ v[1] > v[0] @ v[2]  # similarity sanity
    b64 = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="base64")
    alone = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="float").data[0].embedding
    raw = np.frombuffer(base64.b64decode(b64.data[0].embedding), dtype=np.float32)  # type: ignore[arg-type]
    assert np.allclose(raw, np.array(alone, dtype=np.float32), atol=1e-6)
    tok = client.embeddings.create(model=MODEL, input=[[504, 3575, 282]])
    assert len(tok.data) == 1 and tok.usage.prompt_tokens == 3


def test_embedding_batch_matches_single(client: openai.OpenAI) -> None:
    texts = [
        "Cats and dogs are popular pets that live with families.",
        "Hamsters are small pets kept in cages.",
        "The stock market fell sharply today as investors worried about inflation.",
    ]
    batch = client.embeddings.create(model=MODEL, input=texts).data[0].embedding
    alone = client.embeddings.create(model=MODEL, input=texts[0]).data[0].embedding
    assert float(np.dot(batch, alone)) > 0.99


def test_embeddings_raw_base64(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/embeddings", json={"model": MODEL, "input": "hi", "encoding_format": "base64"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert len(raw) % 4 == 0 and len(raw) // 4 == 576


def test_rerank_ordering(server: Server) -> None:
    docs = [
        "The stock market fell sharply today as investors worried about inflation.",
        "Cats and dogs are popular pets that live with families.",
        "The recipe needs two cups of flour and one egg.",
    ]
    with server.client() as c:
        for path in ("/rerank", "/engines/rerank", "/score", "/v1/rerank"):
            r = c.post(
                path, json={"model": MODEL, "query": "Which animals make good pets?", "documents": docs}
            )
            assert r.status_code == 200, r.text
            results = r.json()["results"]
            assert results[0]["index"] == 1
            scores = [x["relevance_score"] for x in results]
            assert scores == sorted(scores, reverse=True)
        top = c.post("/rerank", json={"model": MODEL, "query": "pets", "documents": docs, "top_n": 1}).json()
        assert len(top["results"]) == 1


def test_rerank_with_a_rerankers_own_head(server: Server, reranker_path: object) -> None:
    """A reranker model (rank pooling) is scored by its classification head over llama-server's prompt
    layout, not by embedding similarity: the server's scores equal the head applied by hand to the last
    token's hidden state of the template-filled pair."""
    from reranker_model import expected_scores

    from dmr._native import Embedder, Model

    query = "Which animals make good pets?"
    docs = ["Cats and dogs live with families.", "The recipe needs flour.", "Stocks fell today.", "x"]
    with server.client() as c:
        r = c.post("/v1/rerank", json={"model": RERANKER, "query": query, "documents": docs})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        usage = r.json()["usage"]
        bad = c.post("/v1/embeddings", json={"model": RERANKER, "input": "hello"})
    assert bad.status_code == 400 and "reranker" in bad.json()["error"]["message"]
    got = {x["index"]: x["relevance_score"] for x in results}
    assert [x["index"] for x in results] == sorted(got, key=lambda i: -got[i])

    ranker = Embedder.create(Model.load(str(reranker_path)), n_ctx=512, n_threads=2)
    assert usage["prompt_tokens"] == sum(len(ranker.rerank_tokens(query, d)) for d in docs)
    expected = expected_scores(reranker_path, query, docs)  # type: ignore[arg-type]
    assert [got[i] for i in range(len(docs))] == pytest.approx(expected, abs=2e-3)


@pytest.mark.slow
def test_structured_output_always_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
        "additionalProperties": False,
    }
    for seed in (1, 2):
        r = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
            temperature=1.0,
            seed=seed,
            max_tokens=40,
        )
        jsonschema.validate(json.loads(r.choices[0].message.content or ""), schema)


@pytest.mark.slow
@pytest.mark.parametrize("model", [MODEL, HERMES])
def test_tool_call_round_trip(client: openai.OpenAI, model: str) -> None:
    tools = WEATHER_TOOLS
    messages: list[dict[str, object]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        tools=tools,  # type: ignore[arg-type]
        tool_choice="required",
        parallel_tool_calls=False,  # SmolLM2 asks about Paris again and again
        max_tokens=100,
        temperature=0,
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += tc.id or ""
                entry["name"] += (tc.function.name or "") if tc.function else ""
                entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert finish == "tool_calls"
    call = calls[0]
    assert call["name"] == "get_weather"
    assert isinstance(json.loads(call["arguments"])["city"], str)
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 24 degrees Celsius"})
    final = client.chat.completions.create(model=model, messages=messages, max_tokens=30, temperature=0)  # type: ignore[arg-type]
    assert final.choices[0].message.content
    assert final.choices[0].finish_reason in ("stop", "length")


@pytest.mark.slow
@pytest.mark.parametrize("tool_choice", ["required", "auto"])
@pytest.mark.parametrize("model", [MODEL, HERMES])
def test_tool_output_streams_as_it_is_written(client: openai.OpenAI, model: str, tool_choice: str) -> None:
    """Generic JSON tools (SmolLM2's own template) and Hermes <tool_call> blocks (a template that renders
    tools itself; the grammar is lazy under auto): streamed and whole answers agree, and arrive in pieces."""
    kw: Any = {
        "model": model,
        "messages": [{"role": "user", "content": "What is the weather in Paris and in Rome?"}],
        "tools": WEATHER_TOOLS,
        "tool_choice": tool_choice,
        "max_tokens": 150,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**kw).choices[0]
    content, calls, text_chunks, finish = "", {}, 0, None
    for chunk in client.chat.completions.create(**kw, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            delta = choice.delta
            if delta.content:
                content += delta.content
                text_chunks += 1
            for tc in delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                assert tc.function is not None
                call["name"] += tc.function.name or ""
                call["arguments"] += tc.function.arguments or ""
                text_chunks += bool(tc.function.arguments)
    if not EXACT:  # see EXACT: the two answers may differ; each must still be well formed
        assert {finish, whole.finish_reason} <= {"stop", "length", "tool_calls"} and text_chunks >= 4
        names = [c["name"] for c in calls.values()] + [
            c.function.name for c in whole.message.tool_calls or []
        ]
        assert all(name == "get_weather" for name in names)
        return
    expected = [(c.function.name, json.loads(c.function.arguments)) for c in whole.message.tool_calls or []]
    streamed = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    # the same greedy answer, whichever way it was asked for
    assert finish == whole.finish_reason
    assert content == (whole.message.content or "")
    assert streamed == expected
    if tool_choice == "required":
        assert expected and expected[0][0] == "get_weather"
        if model == HERMES:  # two cities, two calls in one answer (parallel_tool_calls defaults to true)
            assert [args["city"] for _, args in expected] == ["Paris", "Rome"]
    elif model == HERMES:  # the grammar is lazy: SmolLM2 answers in prose and is not forced into a call
        assert content and not expected
    # ...and it arrived piece by piece, as the model wrote it, not in one delta at the end
    assert text_chunks >= 4


@pytest.mark.slow
def test_parallel_tool_calls_false_makes_one_call(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=HERMES,
        messages=[{"role": "user", "content": "What is the weather in Paris and in Rome?"}],
        tools=WEATHER_TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=150,
        temperature=0,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    assert json.loads(choice.message.tool_calls[0].function.arguments)["city"] == "Paris"


def test_client_vanishing_mid_stream_aborts(server: Server) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a very long story."}],
        "max_tokens": 2000,
        "stream": True,
        "extra": "unknown fields are ignored",
        "ignore_eos": True,
    }
    with server.client() as c, c.stream("POST", "/engines/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        for i, _ in enumerate(r.iter_lines()):
            if i > 5:
                break
    # the generation was aborted: the server answers at once and records a 499 for it
    with server.client(timeout=30) as c:
        for _ in range(50):
            groups = c.get("/engines/requests").json()
            codes = [rec["status_code"] for g in groups for rec in g["records"]]
            if 499 in codes:
                break
            import time

            time.sleep(0.2)
        assert 499 in codes
        r = c.post(
            "/engines/v1/chat/completions", json={"model": MODEL, "messages": QUESTION, "max_tokens": 2}
        )
        assert r.status_code == 200
        metrics = c.get("/metrics").text
        assert "dmr_engine_generated_tokens_total" in metrics


def test_error_json(server: Server) -> None:
    url = "/engines/v1/chat/completions"
    with server.client() as c:
        cases = [
            (c.post(url, content=b"{not json"), 400),
            (c.post(url, content=b""), 400),
            (c.post(url, json=[1, 2]), 400),
            (c.post(url, json={"messages": QUESTION}), 400),
            (c.post(url, json={"model": "ai/does-not-exist", "messages": QUESTION}), 404),
            (c.post(url, json={"model": MODEL, "messages": []}), 400),
            (c.post(url, json={"model": MODEL, "messages": "hi"}), 400),
            (c.post(url, json={"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}), 400),
            (c.post(url, json={"model": MODEL, "messages": QUESTION, "max_tokens": "ten"}), 400),
            (c.post(url, json={"model": MODEL, "messages": QUESTION, "temperature": -1}), 400),
            (c.post(url, json={"model": MODEL, "messages": QUESTION, "n": 3}), 400),
            (
                c.post(
                    url,
                    json={"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
                ),
                400,
            ),
            (
                c.post(url, json={"model": MODEL, "messages": QUESTION, "response_format": {"type": "xml"}}),
                400,
            ),
            (c.post(url, content=b"x" * (11 << 20)), 413),
            (c.post("/v1/embeddings", json={"model": MODEL, "input": []}), 400),
            (c.post("/v1/embeddings", json={"model": MODEL, "input": [1.5]}), 400),
            (c.post("/v1/completions", json={"model": MODEL, "prompt": {"a": 1}}), 400),
            (c.post("/rerank", json={"model": MODEL, "query": "q", "documents": []}), 400),
            (c.post("/engines/vllm2/v1/chat/completions", json={"model": MODEL, "messages": QUESTION}), 404),
            (c.get("/engines/v1/nothing-here"), 404),
        ]
        for r, status in cases:
            assert r.status_code == status, (r.request.url, r.text)
            err = r.json()["error"]
            assert err["message"] and err["type"]
        long = c.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "word " * 3000}]})
        assert long.status_code == 400
        err = long.json()["error"]
        assert err["n_ctx"] == 2048 and err["n_prompt_tokens"] > 2048
        assert str(err["n_ctx"]) in err["message"]
    assert server.alive()


def test_openai_sdk_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ai/unknown", messages=QUESTION)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x " * 5000}])
    assert "context" in str(info.value)


def test_cors_and_double_slashes(server: Server) -> None:
    with server.client() as c:
        r = c.options(
            "/engines/v1/models",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
        )
        assert r.headers.get("access-control-allow-origin") == "http://localhost:3000"
        r = c.options(
            "/engines/v1/models",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert r.headers.get("access-control-allow-origin") is None
        assert c.get("//engines//v1//models").status_code == 200


def test_preload_only(server: Server) -> None:
    with server.client() as c:
        r = c.post(
            "/engines/v1/chat/completions",
            json={"model": MODEL, "messages": QUESTION},
            headers={"X-Preload-Only": "true"},
        )
        assert r.status_code == 200 and r.content == b""
        ps = c.get("/engines/ps").json()
        assert any(p["model_name"] and not p["loading"] for p in ps)


def test_httpx_direct_reasoning_free_content(server: Server) -> None:
    # SmolLM2 never thinks: no reasoning_content appears, content is complete
    r = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": MODEL, "messages": QUESTION, "max_tokens": 8, "temperature": 0},
        timeout=60,
    )
    msg = r.json()["choices"][0]["message"]
    assert "reasoning_content" not in msg and msg["content"]


def test_logprobs_from_the_real_model_streamed_and_not(client: openai.OpenAI) -> None:
    """Computed at sampling time from the logits (issue #18, 5): greedy picks the most likely token, so its
    log-probability is the first alternative's, and the tokens spell the answer."""
    kw: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
    }
    r = client.chat.completions.create(**kw, temperature=0, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content
    text = r.choices[0].message.content or ""
    assert "".join(t.token for t in lp.content).startswith(text)
    for t in lp.content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        tops = [x.logprob for x in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert t.logprob == pytest.approx(tops[0], abs=1e-4)
        assert bytes(t.bytes or []).decode("utf-8", "replace") == t.token
    streamed = []
    for chunk in client.chat.completions.create(**kw, temperature=0, logprobs=True, stream=True):
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            streamed += [t.token for t in chunk.choices[0].logprobs.content]
    assert streamed == [t.token for t in lp.content]
    comp = client.completions.create(
        model=MODEL, prompt="The sky is", max_tokens=4, temperature=0, logprobs=2
    )
    legacy = comp.choices[0].logprobs
    assert legacy is not None and legacy.tokens and len(legacy.top_logprobs or []) == len(legacy.tokens)
    assert all(x <= 0 for x in legacy.token_logprobs or [])
