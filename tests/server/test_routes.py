"""Fast tier: DMR's management routes over the in-process app and the FakeEngine (fake_server.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

HELLO = [{"role": "user", "content": "Hi"}]


async def test_root_version_health_and_models(fake: FakeServer) -> None:
    root = await fake.client.get("/")
    assert root.status_code == 200 and "The service is running" in root.text
    assert "version" in (await fake.client.get("/version")).json()
    assert (await fake.client.get("/health")).status_code == 200
    models = (await fake.client.get("/models")).json()
    assert [m["tags"] for m in models] == [[MODEL]]
    one = (await fake.client.get(f"/models/{MODEL}")).json()
    assert one["id"] == models[0]["id"]
    openai_models = (await fake.client.get("/engines/v1/models")).json()
    assert [m["id"] for m in openai_models["data"]] == [MODEL]
    assert (await fake.client.get("/models/ai/none")).status_code == 404


async def test_tag_then_delete_the_tag_keeps_the_model(fake: FakeServer) -> None:
    r = await fake.client.post(f"/models/{MODEL}/tag", params={"repo": "me/copy", "tag": "v1"})
    assert r.status_code == 201, r.text
    tags = (await fake.client.get("/models")).json()[0]["tags"]
    assert sorted(tags) == sorted([MODEL, "me/copy:v1"])
    assert (await fake.client.delete("/models/me/copy:v1")).status_code == 200
    assert (await fake.client.get("/models")).json()[0]["tags"] == [MODEL]


async def test_ps_unload_and_metrics_follow_a_request(fake: FakeServer) -> None:
    assert (await fake.client.get("/engines/ps")).json() == []
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    (row,) = (await fake.client.get("/engines/ps")).json()
    assert row["model_name"] == MODEL and row["backend_name"] == "fake" and not row["in_use"]
    metrics = (await fake.client.get("/metrics")).text
    assert f'dmr_requests_total{{endpoint="chat/completions",model="{MODEL}",status="200"}} 1.0' in metrics
    r = await fake.client.post("/engines/unload", json={"models": [MODEL]})
    assert r.json() == {"unloaded_runners": 1}
    assert (await fake.client.get("/engines/ps")).json() == []
    assert fake.engine.closed
    assert (await fake.client.post("/engines/unload", content=b"[1]")).status_code == 400


async def test_configure_is_saved_and_applies_to_the_next_load(fake: FakeServer) -> None:
    r = await fake.client.post(
        "/engines/_configure", json={"model": MODEL, "context-size": 512, "runtime-flags": ["--temp", "0.1"]}
    )
    assert r.status_code in (200, 202), r.text
    for _ in range(100):  # _configure preloads in the background
        if fake.engines:
            break
        await asyncio.sleep(0.01)
    shown = (await fake.client.get("/engines/_configure", params={"model": MODEL})).json()
    assert "512" in str(shown) and "--temp" in str(shown)
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert fake.engine.params[-1].temperature == pytest.approx(0.1)
    bad = await fake.client.post("/engines/_configure", json={"model": MODEL, "runtime-flags": ["--evil"]})
    assert bad.status_code == 400 and "--evil" in bad.json()["error"]["message"]


async def test_requests_recorder_and_logs(fake: FakeServer) -> None:
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    groups = (await fake.client.get("/engines/requests")).json()
    assert groups[0]["count"] == 1 and groups[0]["records"][0]["status_code"] == 200
    logs = await fake.client.get("/logs")
    assert logs.status_code == 200 and "loaded ai/fake:latest" in logs.text


async def test_unknown_routes_and_methods_are_json_errors(fake: FakeServer) -> None:
    r = await fake.client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = await fake.client.get("/engines/v1/chat/completions")
    assert r.status_code == 405
    r = await fake.client.post("/engines/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


async def test_api_key_and_body_limit_refusals_are_openai_errors(tmp_path: Path) -> None:
    srv = FakeServer(tmp_path, api_key="sekrit", max_body=1000)
    try:
        assert (await srv.client.get("/")).status_code == 200  # GET / stays open (health checks)
        r = await srv.client.get("/models")
        assert r.status_code == 401
        assert r.json() == {
            "error": {
                "message": "invalid or missing API key",
                "type": "authentication_error",
                "param": None,
                "code": None,
            }
        }
        auth = {"Authorization": "Bearer sekrit"}
        assert (await srv.client.get("/models", headers=auth)).status_code == 200
        big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 2000}]}
        r = await srv.client.post("/engines/v1/chat/completions", json=big, headers=auth)
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
    finally:
        await srv.close()


async def test_preload_only_loads_the_model_without_generating(fake: FakeServer) -> None:
    r = await fake.client.post(
        "/engines/v1/chat/completions", json={"model": MODEL}, headers={"X-Preload-Only": "true"}
    )
    assert r.status_code == 200 and r.content == b""
    assert len(fake.engines) == 1 and fake.engine.params == []  # loaded, nothing generated
    for body in (b"{not json", b'{"model": ""}', b"[]"):
        bad = await fake.client.post(
            "/engines/v1/completions", content=body, headers={"X-Preload-Only": "true"}
        )
        assert bad.status_code == 400, body


async def test_logs_follow_streams_new_lines(fake: FakeServer) -> None:
    marker = f"follow-marker-{id(fake)}"
    await fake.client.get("/health")  # the app is started and its log handler attached

    async def log_soon() -> None:
        await asyncio.sleep(0.05)
        logging.getLogger("dmr.server").warning(marker)

    task = asyncio.create_task(log_soon())
    r = await fake.raw("GET", "/logs?follow=true", leave_after_s=0.5)
    await task
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    assert marker in r.body.decode()  # logged after the client began to follow


async def test_requests_follow_is_sse_with_new_requests(fake: FakeServer) -> None:
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})

    async def chat_soon() -> None:
        await asyncio.sleep(0.05)
        await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})

    task = asyncio.create_task(chat_soon())
    r = await fake.raw(
        "GET",
        f"/engines/requests?model={MODEL}&include_existing=true",
        headers={"accept": "text/event-stream"},
        leave_after_s=0.5,
    )
    await task
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    text = r.body.decode()
    assert text.startswith("event: connected\n")
    assert text.count("event: new_request\n") == 2  # the existing one, then the new one
    missing = await fake.client.get("/engines/requests", params={"model": "ai/none"})
    assert missing.status_code == 404


async def test_configure_listing_filters_by_model_and_refuses_bad_bodies(fake: FakeServer) -> None:
    await fake.client.post("/engines/_configure", json={"model": MODEL, "context-size": 1024})
    (row,) = (await fake.client.get("/engines/llama.cpp/_configure")).json()
    assert row["Model"] == MODEL and row["Config"]["context-size"] == 1024
    assert (await fake.client.get("/engines/_configure", params={"model": "ai/none"})).json() == []
    for body in (b"{not json", b"[1]", b""):
        assert (await fake.client.post("/engines/_configure", content=body)).status_code == 400, body
    r = await fake.client.get("/engines/nope/_configure")
    assert r.status_code == 404 and "backend not found: nope" in r.json()["error"]["message"]


async def test_disk_usage_and_unload_refusals(fake: FakeServer) -> None:
    df = (await fake.client.get("/engines/df")).json()
    assert df["models_disk_usage"] > 0 and df["default_backend_disk_usage"] == 0
    assert (await fake.client.post("/engines/unload", content=b"{oops")).status_code == 400
    r = await fake.client.post("/engines/unload", json={"models": [1]})
    assert r.status_code == 400 and "list of strings" in r.json()["error"]["message"]
    assert (await fake.client.post("/engines/unload", json={"all": True})).json() == {"unloaded_runners": 0}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("temperature", 101, "temperature must be between"),
        ("top_p", 1.5, "top_p must be between"),
        ("n", 2, "only n=1"),
        ("logit_bias", {"x": 1}, "not a token id"),
        ("logit_bias", {"99999999": 1}, "out of range"),
        ("stop", [""], "stop must be at most 16"),
        ("max_tokens", "ten", "invalid request"),
        # the bound printed as 1.07374e+09 (issue #18, 6)
        ("max_tokens", 1 << 31, "max_tokens must be between 0 and 1073741824, got 2147483648"),
        ("max_tokens", -2, "max_tokens must be between 0 and 1073741824"),
    ],
)
async def test_sampling_fields_out_of_range_are_400s_naming_them(
    fake: FakeServer, field: str, value: object, words: str
) -> None:
    body = {"model": MODEL, "messages": HELLO, field: value}
    r = await fake.client.post("/engines/v1/chat/completions", json=body)
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


async def test_completion_prompt_shapes(fake: FakeServer) -> None:
    for prompt in ("", [], [""], [[]], [1.5], {"a": 1}):
        r = await fake.client.post("/engines/v1/completions", json={"model": MODEL, "prompt": prompt})
        assert r.status_code == 400 and "prompt" in r.json()["error"]["message"], (prompt, r.text)
    r = await fake.client.post("/engines/v1/completions", json={"model": MODEL, "prompt": [[1, 2, 3]]})
    assert r.status_code == 200, r.text
    assert (await fake.client.post("/engines/v1/completions", content=b"")).status_code == 400


async def test_version_and_metrics_report_the_backend_registry(fake: FakeServer) -> None:
    assert (await fake.client.get("/version")).json()["backends"] == (
        await fake.client.get("/engines/status")
    ).json()
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    metrics = (await fake.client.get("/metrics")).text
    assert 'dmr_backend_installed{backend="fake"} 1.0' in metrics
    assert 'dmr_backend_installed{backend="vllm"} 0.0' in metrics
    assert 'dmr_backend_models_loaded{backend="fake"} 1.0' in metrics
    assert 'dmr_backend_models_loaded{backend="llama.cpp"} 0.0' in metrics


@pytest.mark.parametrize("prefix", ["/engines", "/engines/llama.cpp"])
async def test_openai_routes_without_the_v1_segment(fake: FakeServer, prefix: str) -> None:
    """litellm's docker_model_runner provider posts to <api_base>/chat/completions with
    api_base=<root>/engines/llama.cpp (issue #18, 8)."""
    r = await fake.client.post(f"{prefix}/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion", r.text
    r = await fake.client.post(f"{prefix}/completions", json={"model": MODEL, "prompt": "Hi"})
    assert r.status_code == 200 and r.json()["object"] == "text_completion", r.text


async def test_n_above_one_names_the_field(fake: FakeServer) -> None:
    r = await fake.client.post(
        "/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "n": 3}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "n", r.text


async def test_max_tokens_zero_generates_nothing_and_minus_one_means_no_limit(fake: FakeServer) -> None:
    """max_tokens 0 still generated a token; -1 (llama.cpp's "no limit") was a 400 (issue #18, 6)."""
    r = await fake.client.post(
        "/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 0}
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["choices"][0]["message"]["content"] == "" and doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"]["completion_tokens"] == 0 and doc["usage"]["prompt_tokens"] > 0
    assert fake.engine.params == []  # the engine was never asked to generate
    r = await fake.client.post(
        "/engines/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 0}
    )
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "", r.text
    r = await fake.client.post(
        "/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": -1}
    )
    assert r.status_code == 200, r.text
    assert fake.engine.params[-1].max_tokens is None
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake engine."
