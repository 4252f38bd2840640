"""Fast tier: DMR's management routes over the in-process app and the FakeEngine (fake_server.py)."""

from __future__ import annotations

import asyncio
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
