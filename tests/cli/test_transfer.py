"""push and pull through a real docker registry (distribution's `registry` binary), progress shown."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from models.registry_server import Registry, running_registry

from .conftest import Cli


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("cli-registry")) as reg:
        yield reg


def test_push_then_pull_back(dmr: Cli, registry: Registry) -> None:
    ref = f"{registry.host}/cli/smollm2:v1"
    assert dmr("tag", "ai/smollm2", ref).returncode == 0
    r = dmr("push", ref)
    assert r.returncode == 0, r.stderr
    assert "Uploading" in r.stderr and "done" in r.stderr  # plain progress lines: stderr is not a TTY
    assert r.stdout.strip()

    rm = dmr("rm", ref)
    assert rm.returncode == 0 and f"Untagged: {ref}" in rm.stdout
    r = dmr("pull", ref)
    assert r.returncode == 0, r.stderr
    assert "Using cached model" in r.stdout or "pulled" in r.stdout
    assert ref in json.loads(dmr("inspect", ref).stdout)["tags"]

    missing = dmr("pull", f"{registry.host}/cli/absent:v1")
    assert missing.returncode == 1 and missing.stderr.startswith("Error:")
    assert "retrying" not in missing.stderr  # 404 is not retried (only network errors, 502/503/504)
    assert dmr("rm", ref).returncode == 0


def test_pull_draws_progress_bars_on_a_terminal(
    dmr: Cli, registry: Registry, tmp_path: Path, smollm2_path: Path
) -> None:
    """The pull goes to a second server over an empty store, so every byte really crosses the wire."""
    from server.helpers import make_store, running_server

    ref = f"{registry.host}/cli/bars:v1"
    assert dmr("tag", "ai/smollm2", ref).returncode == 0
    assert dmr("push", ref).returncode == 0
    assert dmr("rm", ref).returncode == 0
    empty = tmp_path / "empty-store"
    make_store(empty, {})
    with running_server(tmp_path / "srv", empty) as srv:
        child = pexpect.spawn(
            sys.executable,
            ["-m", "dmr.cli.main", "pull", ref],
            env={**dmr.env, "DMR_HOST": srv.url, "COLUMNS": "120"},
            encoding="utf-8",
            timeout=180,
            dimensions=(40, 120),
        )
        child.expect("Model pulled successfully")
        out = child.before or ""
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert "MiB" in out and "━" in out  # rich's bar with binary sizes
