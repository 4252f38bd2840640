"""Fast tier: `dmr status` and `dmr version` (the real CLI, in process) against the real HTTP server (uvicorn
in a thread) over the fake backend. The fake engine is registered ahead of llama.cpp (fake_server.py): both
backends, and vLLM not installed, must be reported, from the registry the server was given."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner

from dmr.cli.main import cli

from .fake_server import FakeServer

pytestmark = pytest.mark.fast


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server: uvicorn.Server | None = None
    ready = threading.Event()

    async def main() -> None:
        nonlocal server
        fake = FakeServer(tmp_path)
        server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning"))
        ready.set()
        try:
            await server.serve()
        finally:
            await fake.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    deadline = time.monotonic() + 10
    while server is None or not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def run(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env={"DMR_HOST": url, "MODEL_RUNNER_HOST": None})
    assert result.exit_code == 0, result.output
    return result.output


def test_status_lists_every_registered_backend(served: str) -> None:
    doc = json.loads(run(served, "status", "--json"))
    assert doc["running"] is True and doc["endpoint"] == f"{served}/engines/v1/"
    assert list(doc["backends"]) == ["fake", "llama.cpp", "vllm"]
    assert doc["backends"]["fake"].startswith("Running: scripted fake engine")
    assert doc["backends"]["vllm"].startswith("Not Installed")
    text = run(served, "status")
    assert f"Docker Model Runner is running at {served}" in text
    rows = {line.split()[0]: line for line in text.splitlines()[2:] if line.strip()}
    assert "Running" in rows["fake"] and "Not" in rows["vllm"]


def test_version_reports_the_backends(served: str) -> None:
    doc = json.loads(run(served, "version", "--json"))
    assert doc["server"]["version"].startswith("v")
    assert set(doc["server"]["backends"]) == {"fake", "llama.cpp", "vllm"}
    assert "Engine:     fake: Running: scripted fake engine" in run(served, "version")


def test_status_when_nothing_answers() -> None:
    result = CliRunner().invoke(cli, ["status"], env={"DMR_HOST": "http://127.0.0.1:9"})
    assert result.exit_code == 1 and "is not running at http://127.0.0.1:9" in result.output
