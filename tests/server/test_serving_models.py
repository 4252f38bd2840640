"""Fast tier: DMR's model management API (/models/...) and the OpenAI model listings, over the in-process
app and a real store (fake_server.py). Registry transfers are replaced by scripted progress where a real
registry would be needed (tests/models and tests/server/test_management.py pull and push for real)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dmr.errors import ModelNotFoundError
from dmr.models.progress import Progress, ProgressCallback
from dmr.models.store import Store

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

HELLO = [{"role": "user", "content": "Hi"}]


def lines(body: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


async def test_openai_model_listing_is_served_from_memory_until_the_store_changes(fake: FakeServer) -> None:
    first = await fake.client.get("/engines/v1/models")
    assert first.json()["data"][0]["id"] == MODEL
    assert fake.app.state.dmr.openai_models is not None  # cached against the index version
    again = await fake.client.get("/v1/models")
    assert again.content == first.content
    await fake.client.post(f"/models/{MODEL}/tag", params={"repo": "me/other"})
    ids = sorted(m["id"] for m in (await fake.client.get("/v1/models")).json()["data"])
    assert ids == [MODEL]  # one model, listed by its first tag
    one = (await fake.client.get(f"/engines/v1/models/{MODEL}")).json()
    assert one["object"] == "model" and one["owned_by"] == "docker" and one["id"] == MODEL
    assert one["dmr"]["context_window"] is None or isinstance(one["dmr"]["context_window"], int)
    missing = await fake.client.get("/engines/v1/models/ai/none")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


async def test_deleting_a_loaded_model_unloads_it(fake: FakeServer) -> None:
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert not fake.engine.closed
    r = await fake.client.delete(f"/models/{MODEL}")
    assert r.status_code == 200 and any("Deleted" in line for line in r.json()), r.text
    assert fake.engine.closed
    assert (await fake.client.get("/engines/ps")).json() == []
    assert (await fake.client.get("/models")).json() == []


async def test_purge_empties_the_store_and_unloads(fake: FakeServer) -> None:
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    r = await fake.client.delete("/models/purge")
    assert r.status_code == 200 and r.json() == {"message": "Model store purged"}
    assert fake.engine.closed
    assert (await fake.client.get("/models")).json() == []


async def test_tag_and_method_refusals(fake: FakeServer) -> None:
    r = await fake.client.post(f"/models/{MODEL}/tag")
    assert r.status_code == 400 and "repo" in r.json()["error"]["message"]
    r = await fake.client.get(f"/models/{MODEL}", params={"remote": "true"})
    assert r.status_code == 501 and r.json()["error"]["type"] == "not_implemented_error"
    r = await fake.client.post(f"/models/{MODEL}")
    assert r.status_code == 405
    r = await fake.client.get("/models//")
    assert r.status_code == 400


async def test_repackage_sets_the_context_size_and_shares_layers(fake: FakeServer) -> None:
    r = await fake.client.post(
        f"/models/{MODEL}/repackage", json={"target": "me/long:8k", "context_size": 8192}
    )
    assert r.status_code == 201, r.text
    assert r.json()["target"] == "me/long:8k"
    long = (await fake.client.get("/models/me/long:8k")).json()
    assert long["config"]["context_size"] == 8192
    source = (await fake.client.get(f"/models/{MODEL}")).json()
    assert source["id"] != long["id"]
    for body, words in (
        ({"context_size": 10}, "target"),
        ({"target": "me/x", "context_size": 0}, "context_size"),
        ({"target": "me/x", "context_size": True}, "context_size"),
        ([1, 2], "JSON object"),
    ):
        bad = await fake.client.post(f"/models/{MODEL}/repackage", json=body)
        assert bad.status_code == 400 and words in bad.json()["error"]["message"], (body, bad.text)
    bad = await fake.client.post(f"/models/{MODEL}/repackage", content=b"{oops")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]


async def test_export_then_load_into_another_store(fake: FakeServer, tmp_path: Path) -> None:
    tar = await fake.client.get(f"/models/{MODEL}/export")
    assert tar.status_code == 200 and tar.headers["content-type"] == "application/x-tar"
    assert len(tar.content) > 1024
    assert (await fake.client.get("/models/ai/none/export")).status_code == 404

    other = FakeServer(tmp_path / "other")
    try:
        await other.client.delete("/models/purge")
        r = await other.client.post(
            "/models/load", content=tar.content, headers={"accept": "application/json"}
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        events = lines(r.text)
        assert events[-1]["type"] == "success", events
        (model,) = (await other.client.get("/models")).json()
        source_id = (await fake.client.get(f"/models/{MODEL}")).json()["id"]
        assert model["id"] == source_id and model["tags"] == []  # untagged, as DMR loads: the CLI tags it
        await other.client.post(f"/models/{source_id}/tag", params={"repo": "ai/fake"})
        empty = await other.client.post("/models/load", content=b"")
        assert empty.status_code == 400 and "tar" in empty.json()["error"]["message"]
        garbage = await other.client.post("/models/load", content=b"x" * 4096)
        assert garbage.status_code == 400 and "archive" in garbage.json()["error"]["message"], garbage.text
        cut = await other.client.post("/models/load", content=tar.content[:700])  # inside manifest.json
        assert cut.status_code == 400 and "archive" in cut.json()["error"]["message"], cut.text
        assert [m["tags"] for m in (await other.client.get("/models")).json()] == [[MODEL]]  # nothing lost
    finally:
        await other.close()


async def test_create_streams_pull_progress_and_a_late_failure_as_an_error_line(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def scripted_pull(ref: str, store: Store, progress: ProgressCallback, credentials: Any = None) -> None:
        seen["ref"], seen["token"] = ref, credentials.bearer_token if credentials else None
        prog = Progress(progress, "pull", 2000)
        prog.update("sha256:" + "a" * 64, 1000, 1000)
        if ref.endswith("broken"):
            raise ConnectionError("registry went away")
        store.tag(MODEL, ref)
        prog.success("Model pulled successfully")

    monkeypatch.setattr("dmr.models.pull.pull", scripted_pull)
    r = await fake.client.post("/models/create", json={"from": " me/pulled:v1 ", "bearer-token": "tok"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    events = lines(r.text)
    assert events[0]["type"] == "progress" and events[0]["mode"] == "pull"
    assert events[-1] == {"type": "success", "message": "Model pulled successfully", "mode": "pull"}
    assert seen == {"ref": "me/pulled:v1", "token": "tok"}
    assert (await fake.client.get("/models/me/pulled:v1")).status_code == 200

    r = await fake.client.post("/models/create", json={"from": "me/broken"})
    assert r.status_code == 200  # the status line was sent with the first progress event
    last = lines(r.text)[-1]
    assert last["type"] == "error" and "registry went away" in last["message"]


async def test_create_failure_before_any_progress_is_an_http_error(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = await fake.client.post("/models/create", json={})
    assert r.status_code == 400 and "from" in r.json()["error"]["message"]

    def not_found(ref: str, store: Store, progress: ProgressCallback, credentials: Any = None) -> None:
        raise ModelNotFoundError(f"model {ref} not found in registry")

    monkeypatch.setattr("dmr.models.pull.pull", not_found)
    r = await fake.client.post("/models/create", json={"from": "me/absent"})
    assert r.status_code == 404 and "me/absent" in r.json()["error"]["message"]


async def test_push_streams_progress(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def scripted_push(ref: str, store: Store, progress: ProgressCallback, credentials: Any = None) -> str:
        seen.append(ref)
        prog = Progress(progress, "push", 10)
        prog.update("sha256:" + "b" * 64, 10, 10)
        prog.success("Model pushed successfully")
        return "sha256:" + "c" * 64

    monkeypatch.setattr("dmr.models.push.push", scripted_push)
    r = await fake.client.post(f"/models/{MODEL}/push", json={})
    assert r.status_code == 200, r.text
    events = lines(r.text)
    assert events[0]["mode"] == "push" and events[-1]["type"] == "success"
    assert seen == [MODEL]
    missing = await fake.client.post("/models/ai/none/push")
    assert missing.status_code == 404


async def test_model_listing_reports_the_context_a_request_can_use(fake: FakeServer) -> None:
    """It said the model's trained 8192 while the runner held 4096 (issue #18, 10)."""

    async def listed() -> dict[str, Any]:
        doc = (await fake.client.get("/engines/v1/models")).json()
        one = (await fake.client.get(f"/engines/v1/models/{MODEL}")).json()
        (entry,) = [m for m in doc["data"] if m["id"] == one["id"]]
        assert entry["dmr"] == one["dmr"]
        return dict(entry["dmr"])

    fake.script.n_ctx = 1000  # what the loaded engine will hold
    trained = (await listed())["max_context_window"]
    assert (await listed())["context_window"] == min(fake.scheduler.default_context_size, trained)
    await fake.client.post("/engines/_configure", json={"model": MODEL, "context-size": 512})
    await fake.client.post("/engines/unload", json={"all": True})
    assert (await listed())["context_window"] == 512  # what a load would give now
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    info = await listed()
    assert info["context_window"] == 1000 and info["max_context_window"] == trained  # the runner's
