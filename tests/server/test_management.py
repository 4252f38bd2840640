"""DMR's management API on a real server: the Testcontainers flow over a real registry, tag, delete,
export/load, repackage, engines endpoints, configure, recorder, logs, metrics, version."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from dmr.models.push import push
from dmr.models.store import Store

from .conftest import MODEL
from .helpers import Server, make_store, running_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.registry_server import Registry, running_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        src = make_store(tmp_path_factory.mktemp("src"), {f"{reg.host}/ai/smollm2:135m": smollm2_path})
        push(f"{reg.host}/ai/smollm2:135m", src)
        yield reg


@pytest.fixture(scope="module")
def tc_server(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Iterator[Server]:
    """A server with an empty store whose default registry is the test registry (as Docker Hub)."""
    empty = tmp_path_factory.mktemp("empty-store")
    with running_server(
        tmp_path_factory.mktemp("tc"),
        empty,
        env={"DMR_DEFAULT_REGISTRY": registry.host, "DMR_INSECURE_REGISTRY": "1", "DMR_CONTEXT_SIZE": "1024"},
    ) as s:
        yield s


@pytest.mark.slow
def test_testcontainers_flow(tc_server: Server) -> None:
    with tc_server.client() as c:
        r = c.get("/")
        assert r.status_code == 200
        assert "Docker Model Runner" in r.text and "The service is running" in r.text
        with c.stream(
            "POST", "/models/create", json={"from": "ai/smollm2:135m"}, headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("application/json")
            lines = [json.loads(line) for line in resp.iter_lines() if line.strip()]
        assert lines[-1] == {"type": "success", "message": "Model pulled successfully", "mode": "pull"}
        assert any(e["type"] == "progress" and e.get("layer") for e in lines)
        m = c.get("/models/ai/smollm2:135m").json()
        # shown with the registry: the test registry stands in for Docker Hub but is not docker.io
        assert any(t.endswith("ai/smollm2:135m") for t in m["tags"])
        assert m["config"]["format"] == "gguf"
        again = c.post("/models/create", json={"from": "ai/smollm2:135m"}).text.strip().splitlines()
        assert "Using cached model" in json.loads(again[-1])["message"]
        assert c.post("/models/create", json={"from": "ai/not-there"}).status_code == 404
        assert c.post("/models/create", json={"from": "Bad Ref!!"}).status_code == 400
    with openai.OpenAI(base_url=tc_server.v1, api_key="dummy", max_retries=0) as oc:
        r2 = oc.chat.completions.create(
            model="ai/smollm2:135m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert r2.choices[0].message.role == "assistant"


def test_model_management(server: Server, tmp_path: Path) -> None:
    with server.client() as c:
        assert c.get("/version").json()["version"].startswith("v")
        models = c.get("/models").json()
        assert any(MODEL in m["tags"] for m in models)
        got = c.get("/models/smollm2").json()
        assert got["id"].startswith("sha256:")
        assert c.get("/models/ai/nothing").status_code == 404
        listed = {m["id"] for m in c.get("/engines/v1/models").json()["data"]}  # now served from memory
        r = c.post("/models/ai/smollm2/tag", params={"repo": "myorg/small", "tag": "v1"})
        assert r.status_code == 201 and r.json()["target"].endswith("myorg/small:v1")
        assert {m["id"] for m in c.get("/engines/v1/models").json()["data"]} == listed  # a tag, no new model
        assert c.post("/models/ai/smollm2/tag").status_code == 400
        assert c.get("/models/myorg/small:v1").json()["id"] == got["id"]
        exported = c.get("/models/myorg/small:v1/export")
        assert exported.status_code == 200 and exported.headers["content-type"] == "application/x-tar"
        loaded = c.post("/models/load", content=exported.content).text.strip().splitlines()
        assert json.loads(loaded[-1])["type"] == "success"
        r = c.post(
            "/models/myorg/small:v1/repackage", json={"target": "myorg/small:ctx", "context_size": 1024}
        )
        assert r.status_code == 201
        assert c.get("/models/myorg/small:ctx").json()["config"]["context_size"] == 1024
        # the OpenAI listing follows the store at once (its cached body is keyed on the index version)
        ids = {m["id"] for m in c.get("/engines/v1/models").json()["data"]}
        assert any(i.endswith("myorg/small:ctx") for i in ids - listed), ids
        deleted = c.delete("/models/myorg/small:v1").json()
        assert deleted == [{"Untagged": "myorg/small:v1"}]
        assert c.delete("/models/myorg/small:ctx").json()[-1].keys() == {"Deleted"}
        assert {m["id"] for m in c.get("/engines/v1/models").json()["data"]} == listed
        c.post("/models/ai/smollm2/tag", params={"repo": "myorg/extra", "tag": "v1"})
        assert c.delete(f"/models/{got['id']}").status_code == 409  # one ID, several tags, no force
        assert c.delete("/models/myorg/extra:v1").json() == [{"Untagged": "myorg/extra:v1"}]
        assert c.get("/models/smollm2").status_code == 200


def test_engines_endpoints(server: Server) -> None:
    with server.client() as c:
        c.post(
            "/engines/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
        assert c.get("/engines/status").json()["llama.cpp"].startswith("Running")
        ps = c.get("/engines/ps").json()
        assert ps and ps[0]["backend_name"] == "llama.cpp" and ps[0]["keep_alive"] == "5m0s"
        df = c.get("/engines/df").json()
        assert df["models_disk_usage"] > 90_000_000
        r = c.post(
            "/engines/_configure",
            json={
                "model": MODEL,
                "context-size": 1024,
                "runtime-flags": ["--threads", "2", "--repeat-penalty", "1.05"],
                "keep_alive": "10m",
            },
        )
        assert r.status_code == 202, r.text
        assert (
            c.post(
                "/engines/_configure", json={"model": MODEL, "runtime-flags": ["--model", "/etc/x"]}
            ).status_code
            == 400
        )
        assert c.post("/engines/llama.cpp/_configure", json={"model": "ai/none"}).status_code == 404
        shown = c.get("/engines/_configure", params={"model": MODEL}).json()
        assert shown[0]["Config"]["context-size"] == 1024 and shown[0]["Config"]["keep_alive"] == "10m"
        r = c.post(
            "/engines/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "word " * 1100}]},
        )
        assert r.status_code == 400 and r.json()["error"]["n_ctx"] == 1024
        assert c.post("/engines/unload", json={"all": True}).json()["unloaded_runners"] >= 0
        r = c.post("/engines/_configure", json={"model": MODEL, "context-size": 2048})
        assert r.status_code == 202


def test_recorder_logs_metrics(server: Server) -> None:
    with server.client() as c:
        c.post(
            "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "rec"}],
                "max_tokens": 2,
                "stream": True,
            },
        )
        groups = c.get("/engines/requests", params={"model": MODEL}).json()
        rec = groups[0]["records"][-1]
        assert {
            "id",
            "model",
            "method",
            "url",
            "request",
            "response",
            "error",
            "timestamp",
            "status_code",
            "user_agent",
            "origin",
        } <= rec.keys()
        assert json.loads(rec["response"])["object"] == "chat.completion"  # the stream, collapsed
        with c.stream(
            "GET",
            "/engines/requests",
            headers={"Accept": "text/event-stream"},
            params={"include_existing": "true"},
        ) as s:
            lines = []
            for line in s.iter_lines():
                lines.append(line)
                if line.startswith("event: new_request"):
                    break
        assert lines[0] == "event: connected"
        assert "dmr server started" in c.get("/logs").text
        metrics = c.get("/metrics").text
        for name in (
            "dmr_requests_total",
            "dmr_request_duration_seconds_bucket",
            "dmr_time_to_first_token_seconds",
            "dmr_generation_tokens_per_second",
            "dmr_queue_depth",
            "dmr_slots_busy",
            "dmr_kv_usage_ratio",
            "dmr_engine_cached_tokens_total",
            "dmr_speculative_acceptance_ratio",
            "dmr_models_loaded",
        ):
            assert name in metrics, name


def test_api_key(tmp_path: Path, smollm2_store: Path) -> None:
    with running_server(tmp_path, smollm2_store, env={"DMR_API_KEY": "s3cret"}) as s:
        assert httpx.get(s.url + "/").status_code == 200
        assert httpx.get(s.url + "/models").status_code == 401
        assert httpx.get(s.url + "/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        with openai.OpenAI(base_url=s.v1, api_key="s3cret", max_retries=0) as oc:
            assert oc.models.list().data
        with (
            openai.OpenAI(base_url=s.v1, api_key="wrong", max_retries=0) as oc,
            pytest.raises(openai.AuthenticationError),
        ):
            oc.models.list()


def test_purge(tmp_path: Path, smollm2_path: Path) -> None:
    root = tmp_path / "store"
    make_store(root, {"ai/tiny:latest": smollm2_path})
    with running_server(tmp_path / "srv", root) as s, s.client() as c:
        assert c.delete("/models/purge").status_code == 200
        assert c.get("/models").json() == []
    assert Store(root).list() == []
