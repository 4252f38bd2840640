"""dmr as the Docker CLI's `model` plugin (issue #18, 3): `dmr install-plugin`, then the commands Compose and
Testcontainers run through a real `docker` CLI (Debian's docker.io where installed), with no Docker daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from server.helpers import Server

from .conftest import Cli


def _docker() -> str | None:
    for candidate in ("/usr/bin/docker", shutil.which("docker")):  # Debian's docker.io first
        if candidate and Path(candidate).is_file():
            return candidate
    return None


DOCKER = _docker()
pytestmark = pytest.mark.skipif(DOCKER is None, reason="no docker CLI (apt-get install docker.io)")


@pytest.fixture
def docker_env(dmr: Cli, tmp_path: Path) -> dict[str, str]:
    env = {
        **dmr.env,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "DOCKER_HOST": "unix:///nonexistent.sock",
    }
    r = dmr("install-plugin", env=env, console_script=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "docker-config" / "cli-plugins" / "docker-model").is_file()
    return env


def docker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert DOCKER is not None
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=240, cwd="/")


def test_docker_model_commands_run_dmr_without_a_daemon(
    docker_env: dict[str, str], cli_server: Server
) -> None:
    plugins = docker(docker_env, "info", "--format", "{{json .ClientInfo.Plugins}}")
    listed = json.loads(plugins.stdout or "[]")
    assert any(p.get("Name") == "model" and p.get("Vendor") == "dmr" for p in listed), (
        plugins.stdout + plugins.stderr
    )

    version = docker(docker_env, "model", "version")
    assert version.returncode == 0, version.stderr
    assert "Backend:    cpu" in version.stdout and "Server:" in version.stdout

    ls = docker(docker_env, "model", "ls", "--json")
    assert ls.returncode == 0, ls.stderr
    assert any("ai/smollm2:latest" in m["tags"] for m in json.loads(ls.stdout))

    status = docker(docker_env, "model", "status", "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["running"] is True and doc["endpoint"].endswith("/engines/v1/")

    run = docker(docker_env, "model", "run", "--max-tokens", "8", "ai/smollm2", "hi")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
