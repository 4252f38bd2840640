"""Concurrency: processes pulling and tagging at once keep a valid index with every result, and two
pulls of one model download it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from dmr.models.pull import PullResult, pull
from dmr.models.store import Store

from .helpers import tiny_model
from .registry_server import CuttingProxy, Registry

ROOT = Path(__file__).resolve().parents[2]

_WORKER = """
import json, sys
from dmr.models.pull import pull
from dmr.models.store import Store
ref, root, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = Store(root)
r = pull(ref, store)
for i in range(n):
    store.tag(r.model_id, f"{prefix}/m:{i}")
print(json.dumps({"id": r.model_id, "downloaded": r.downloaded}), flush=True)
"""


def _spawn(ref: str, root: Path, prefix: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, ref, str(root), prefix, str(n)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_processes_pull_and_tag(registry: Registry, pushed: str, smollm2_id: str, tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = Store(root)
    other = tiny_model(store, b"another model", ["ai/other"])
    # Slow the transfer so both processes are inside the pull at the same time.
    proxy = CuttingProxy(registry.host, throttle_bps=200 << 20)
    try:
        ref = f"{proxy.host}/ai/smollm2:latest"
        procs = [_spawn(ref, root, p, 25) for p in ("proc-a", "proc-b")]
        outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    finally:
        proxy.close()
    assert all(p.returncode == 0 for p in procs)
    assert {o["id"] for o in outs} == {smollm2_id}
    size = sum(store.blob_path(f).stat().st_size for f in store.get(smollm2_id).files)
    # the per-blob lock makes the second process wait and find the blob: one download in total
    assert sum(o["downloaded"] for o in outs) == size
    index = json.loads((root / "models.json").read_text())
    tags = store.get(smollm2_id).tags
    expected = {f"{p}/m:{i}" for p in ("proc-a", "proc-b") for i in range(25)}
    assert expected <= set(tags)  # no lost update
    assert f"{ref.split('/')[0]}/ai/smollm2:latest" in tags
    assert store.get("ai/other").id == other
    assert len(index["models"]) == 2
    assert store.check() == []


def test_two_threads_pull_same_model_download_once(pushed: str, smollm2_id: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    results: list[PullResult] = []
    threads = [threading.Thread(target=lambda: results.append(pull(pushed, store))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.model_id for r in results] == [smollm2_id, smollm2_id]
    size = sum(store.blob_path(f).stat().st_size for f in store.get(smollm2_id).files)
    assert sum(r.downloaded for r in results) == size
    assert store.check() == []
