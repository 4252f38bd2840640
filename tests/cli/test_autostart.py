"""With nothing listening, `dmr run` starts `dmr serve` in the background; the next command reuses it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server.helpers import free_port

from .conftest import Cli, cli_env


@pytest.fixture
def fresh(tmp_path: Path, cli_store: Path) -> Iterator[tuple[Cli, Path]]:
    port = free_port()
    env = cli_env(tmp_path, f"http://127.0.0.1:{port}", cli_store)
    yield Cli(env), tmp_path / "logs"
    pidfile = tmp_path / "logs" / f"serve-{port}.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_run_starts_a_server_and_the_next_run_reuses_it(fresh: tuple[Cli, Path]) -> None:
    dmr, logs = fresh
    st = dmr("status", "--json")
    assert st.returncode == 1 and json.loads(st.stdout)["running"] is False  # status never starts one

    first = dmr("run", "--max-tokens", "16", "ai/smollm2", "Say hi")
    assert first.returncode == 0, first.stderr
    assert "Starting the model runner" in first.stderr and first.stdout.strip()
    pids = list(logs.glob("serve-*.pid"))
    assert len(pids) == 1
    pid = int(pids[0].read_text())
    assert (logs / "serve.log").exists()

    second = dmr("run", "--max-tokens", "16", "ai/smollm2", "Say bye")
    assert second.returncode == 0, second.stderr
    assert "Starting the model runner" not in second.stderr and second.stdout.strip()
    assert int(pids[0].read_text()) == pid
    os.kill(pid, 0)  # still alive: it outlives the CLI that started it
    assert json.loads(dmr("status", "--json").stdout)["running"] is True


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["run", "package"])
@pytest.mark.parametrize("where", ["checkout", "elsewhere"])
def test_run_and_package_autostart_a_server_that_works_from_any_directory(
    fresh: tuple[Cli, Path], tmp_path: Path, smollm2_path: Path, where: str, command: str
) -> None:
    """Started inside a checkout, the server imported the source tree's dmr (no compiled module) and
    every request failed with `cannot import name '_native'`."""
    dmr, _ = fresh
    cwd = ROOT if where == "checkout" else tmp_path
    assert (ROOT / "dmr" / "__init__.py").exists()
    if command == "run":
        r = dmr("run", "--max-tokens", "8", "ai/smollm2", "Say hi", cwd=cwd, console_script=True)
    else:
        r = dmr("package", "--gguf", str(smollm2_path), f"ai/packaged-{where}", cwd=cwd, console_script=True)
    assert r.returncode == 0, r.stderr
    assert "Starting the model runner" in r.stderr
    assert "_native" not in r.stdout + r.stderr
    if command == "run":
        assert r.stdout.strip()
    else:
        listed = dmr("ls", "--json", cwd=cwd, console_script=True)
        assert f"ai/packaged-{where}" in listed.stdout, listed.stdout
