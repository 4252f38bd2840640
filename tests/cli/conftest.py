"""The CLI under test runs as real subprocesses against a real `dmr serve` holding the real SmolLM2."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from server.helpers import Server, make_store, running_server

MODEL = "ai/smollm2:latest"


@dataclass
class Cli:
    """Runs `python -m dmr.cli.main ...` with an environment that points at one server."""

    env: dict[str, str]

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 240,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        console_script: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """`console_script`: the installed `dmr` command (what a user types), which puts no working
        directory on sys.path, instead of `python -m` (which does: keep `cwd` away from a checkout then)."""
        head = (
            [str(Path(sys.executable).with_name("dmr"))]
            if console_script
            else [sys.executable, "-m", "dmr.cli.main"]
        )
        return subprocess.run(
            [*head, *args],
            cwd=cwd,
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )


def cli_env(workdir: Path, url: str, store: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DMR_", "MODEL_RUNNER_")) and k != "HF_TOKEN"
    }
    return {
        **env,
        "DMR_HOST": url,
        "DMR_MODELS_PATH": str(store),
        "DMR_LOG_DIR": str(workdir / "logs"),
        "DMR_STATE_PATH": str(workdir / "runtime-config.json"),
        "DMR_HISTORY": str(workdir / "history"),
        "DOCKER_CONFIG": str(workdir / "docker-config"),
        "DMR_THREADS": "2",
        "DMR_CONTEXT_SIZE": "2048",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def cli_store(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    root = tmp_path_factory.mktemp("cli-store")
    make_store(root, {MODEL: smollm2_path})
    return root


@pytest.fixture(scope="session")
def cli_server(tmp_path_factory: pytest.TempPathFactory, cli_store: Path) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("cli-server"), cli_store, env={"DMR_CONTEXT_SIZE": "2048"}
    ) as srv:
        yield srv


@pytest.fixture(scope="session")
def dmr(tmp_path_factory: pytest.TempPathFactory, cli_server: Server, cli_store: Path) -> Cli:
    return Cli(cli_env(tmp_path_factory.mktemp("cli"), cli_server.url, cli_store))
