"""A real `dmr serve` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from dmr.models.package import package
from dmr.models.store import Store

#: Fixed so the packaged model has the same ID in every run.
CREATED = 1_700_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_store(root: Path, models: dict[str, Path]) -> Store:
    st = Store(root)
    for tag, path in models.items():
        package(st, gguf=path, created=CREATED, tags=[tag])
    return st


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def v1(self) -> str:
        return self.url + "/engines/v1"

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            return httpx.get(self.url + "/", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False


@contextmanager
def running_server(
    workdir: Path,
    store_root: Path,
    *,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    threads: int = 2,
    python: str | Path = sys.executable,
) -> Iterator[Server]:
    """`python`: the interpreter whose dmr serves (another venv's, for the wheels in tests/wheels)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {
        **os.environ,
        "DMR_STATE_PATH": str(workdir / "runtime-config.json"),
        "DMR_LOG_DIR": str(workdir / "logs"),
        "DOCKER_CONFIG": str(workdir / "docker-config"),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    full_env.pop("DMR_API_KEY", None) if "DMR_API_KEY" not in (env or {}) else None
    log_path = workdir / f"server-{port}.log"
    cmd = [
        str(python),
        "-c",
        "from dmr.cli.main import main; main()",
        "serve",
        "--port",
        str(port),
        "--models-path",
        str(store_root),
        "--threads",
        str(threads),
        *(args or []),
    ]
    with log_path.open("wb") as logf:
        # cwd "/": `-c` puts the cwd first on sys.path, and a checkout there would shadow the installed dmr
        proc = subprocess.Popen(cmd, env=full_env, stdout=logf, stderr=subprocess.STDOUT, cwd="/")
    server = Server(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + 60
        while not server.alive():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
