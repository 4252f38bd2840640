"""Fast tier: the backend registry (dmr/scheduling/backends.py) through the in-process server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from server.fake_server import MODEL, FakeServer

from dmr.errors import BackendNotInstalledError
from dmr.models.package import package
from dmr.scheduling.backends import BackendRegistry, default_registry, vllm_placeholder
from dmr.scheduling.llama_flags import LLAMA_FLAGS, FlagTable

pytestmark = pytest.mark.fast


async def test_the_fake_backend_shows_in_engines_status_and_ps(fake: FakeServer) -> None:
    before = (await fake.client.get("/engines/status")).json()
    assert list(before) == ["fake", "llama.cpp", "vllm"]
    assert before["fake"] == "Running: scripted fake engine (0 loaded)"
    assert before["vllm"].startswith("Not Installed")
    r = await fake.client.post(
        "/engines/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 200
    assert (await fake.client.get("/engines/status")).json()["fake"].endswith("(1 loaded)")
    (row,) = (await fake.client.get("/engines/ps")).json()
    assert row["backend_name"] == "fake"
    # engine paths name a registered backend; others are 404
    assert (await fake.client.get("/engines/fake/v1/models")).status_code == 200
    assert (await fake.client.get("/engines/nope/v1/models")).status_code == 404


async def test_a_model_no_installed_backend_runs_is_a_4xx_naming_the_backend(
    fake: FakeServer, tmp_path: Path
) -> None:
    weights = tmp_path / "st"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (weights / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    package(fake.store, safetensors_dir=weights, created=1700000000, tags=["ai/st:latest"])
    r = await fake.client.post(
        "/engines/v1/chat/completions",
        json={"model": "ai/st", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "safetensors" in message and "vllm" in message and "not installed" in message
    assert not fake.loader.runners


def test_registry_prefers_the_first_installed_backend_for_a_format() -> None:
    reg = default_registry()
    assert reg.for_format("gguf", "m").name == "llama.cpp"
    with pytest.raises(BackendNotInstalledError) as err:
        reg.for_format("safetensors", "m")
    assert err.value.backend == "vllm"
    with pytest.raises(BackendNotInstalledError, match="no backend runs"):
        BackendRegistry([vllm_placeholder()]).for_format("gguf", "m")


async def test_runtime_flags_are_checked_by_the_backend_that_runs_the_model(tmp_path: Path) -> None:
    srv = FakeServer(tmp_path)
    try:
        # the fake backend takes llama-server's flags under its own name...
        r = await srv.client.post(
            "/engines/_configure", json={"model": MODEL, "runtime-flags": ["--evil", "1"]}
        )
        assert r.status_code == 400 and "not allowed by the fake backend" in r.json()["error"]["message"]
        # ...and a backend whose table is empty takes none: --temp, fine for llama.cpp, is refused
        fake = srv.backends.get("fake")
        assert fake is not None
        srv.backends.register(replace(fake, runtime_flags=FlagTable("fake")))
        r = await srv.client.post(
            "/engines/_configure", json={"model": MODEL, "runtime-flags": ["--temp", "0.5"]}
        )
        assert (
            r.status_code == 400
            and "'--temp' is not allowed by the fake backend" in r.json()["error"]["message"]
        )
        assert LLAMA_FLAGS.parse(["--temp", "0.5"]) == ({}, {"temperature": 0.5})
    finally:
        await srv.close()
