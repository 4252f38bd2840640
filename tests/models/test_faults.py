"""Faults: every one leaves the store consistent and no partial blob visible under a digest name."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmr.errors import DigestMismatchError, RegistryError, StoreError, UnsafePathError
from dmr.models import artifact, blobs, reference
from dmr.models.pull import pull
from dmr.models.push import push
from dmr.models.registry import RegistryClient
from dmr.models.store import Store

from .registry_server import CuttingProxy, Registry, free_port, running_registry

ROOT = Path(__file__).resolve().parents[2]


def _visible_blobs(store: Store) -> set[str]:
    return {p.name for p in store.blobs_dir.iterdir() if not p.name.endswith(".incomplete")}


def _assert_clean_failure(store: Store) -> None:
    assert store.check() == []
    assert store.list() == []
    assert not [p for p in store.blobs_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def proxy_ref(registry: Registry, pushed: str) -> Iterator[tuple[CuttingProxy, str]]:
    proxy = CuttingProxy(registry.host, cut_after=40 << 20)
    yield proxy, f"{proxy.host}/ai/smollm2:latest"
    proxy.close()


def test_cut_then_next_pull_resumes(
    proxy_ref: tuple[CuttingProxy, str], smollm2_id: str, tmp_path: Path
) -> None:
    _proxy, ref = proxy_ref
    store = Store(tmp_path / "s")
    with pytest.raises(RegistryError):
        pull(ref, store, client_options={"retries": 0})
    _assert_clean_failure(store)
    partial = [p for p in store.blobs_dir.iterdir() if p.name.endswith(".incomplete")]
    assert len(partial) == 1 and partial[0].stat().st_size > 10 << 20
    assert partial[0].name.removesuffix(".incomplete") not in _visible_blobs(store)
    have = partial[0].stat().st_size

    result = pull(ref, store)
    assert result.model_id == smollm2_id
    big = max(result.blobs, key=lambda b: b.size)
    assert big.resumed_from == have
    assert big.downloaded == big.size - have  # only the missing tail crossed the network
    assert store.check() == []


def test_cut_is_resumed_within_one_pull(
    proxy_ref: tuple[CuttingProxy, str], smollm2_id: str, tmp_path: Path
) -> None:
    _, ref = proxy_ref
    store = Store(tmp_path / "s")
    result = pull(ref, store)
    assert result.model_id == smollm2_id
    big = max(result.blobs, key=lambda b: b.size)
    assert big.downloaded == big.size  # cut at 40 MiB + resumed tail, no byte fetched twice
    assert store.check() == []


def test_corrupted_blob_is_discarded(tmp_path: Path, source_store: Store, smollm2_id: str) -> None:
    with running_registry(tmp_path / "reg") as reg:
        ref = f"{reg.host}/ai/smollm2:latest"
        source_store.tag(smollm2_id, ref)
        push(ref, source_store)
        _, manifest = source_store.manifest(ref)
        layer = manifest["layers"][0]["digest"]
        data = reg.blob_data_path(layer)
        with data.open("r+b") as f:
            f.seek(5_000_000)
            byte = f.read(1)
            f.seek(5_000_000)
            f.write(bytes([byte[0] ^ 0xFF]))
        store = Store(tmp_path / "s")
        with pytest.raises(DigestMismatchError, match="failed verification"):
            pull(ref, store)
        _assert_clean_failure(store)
        assert not store.has_blob(layer)
        assert not store.incomplete_path(layer).exists()


def test_registry_down_fails_fast(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match="unreachable: connection refused"):
        pull(f"127.0.0.1:{free_port()}/ai/smollm2:latest", store)
    assert time.monotonic() - t0 < 10
    _assert_clean_failure(store)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    ok = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        == 0
    )
    yield mnt if ok else None
    if ok:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_during_pull(
    small_disk: Path | None, pushed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if small_disk is None:
        # No tmpfs: inject ENOSPC into the blob writer after 8 MiB instead.
        real_open = open
        written = [0]

        class Full:
            def __init__(self, f: object) -> None:
                self.f = f

            def __getattr__(self, name: str) -> object:
                return getattr(self.f, name)

            def __enter__(self) -> Full:
                return self

            def __exit__(self, *a: object) -> None:
                self.f.close()  # type: ignore[attr-defined]

            def write(self, b: bytes) -> int:
                written[0] += len(b)
                if written[0] > 8 << 20:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return self.f.write(b)  # type: ignore[attr-defined, no-any-return]

        def fake_open(path: str, mode: str = "r", *a: object, **k: object) -> object:
            f = real_open(path, mode, *a, **k)  # type: ignore[call-overload]
            return Full(f) if str(path).endswith(".incomplete") else f

        monkeypatch.setattr(blobs, "open", fake_open, raising=False)
        root = tmp_path / "s"
    else:
        root = small_disk / "s"
    store = Store(root)
    with pytest.raises(StoreError) as err:
        pull(pushed, store)
    assert err.value.errno == errno.ENOSPC
    _assert_clean_failure(store)
    assert not [p for p in store.blobs_dir.iterdir() if p.name.endswith(".incomplete")]


_PULL_SCRIPT = """
import sys
from dmr.models.pull import pull
from dmr.models.store import Store
r = pull(sys.argv[1], Store(sys.argv[2]))
print(r.model_id, r.downloaded, flush=True)
"""


def test_kill_9_then_new_pull(registry: Registry, pushed: str, smollm2_id: str, tmp_path: Path) -> None:
    proxy = CuttingProxy(registry.host, throttle_bps=40 << 20)
    try:
        ref = f"{proxy.host}/ai/smollm2:latest"
        root = tmp_path / "s"
        Store(root)
        proc = subprocess.Popen(
            [sys.executable, "-c", _PULL_SCRIPT, ref, str(root)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 30
        store = Store(root)
        while time.monotonic() < deadline:
            partial = [p for p in store.blobs_dir.iterdir() if p.name.endswith(".incomplete")]
            if partial and partial[0].stat().st_size > 8 << 20:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert store.check() == [] and store.list() == []
        have = max(p.stat().st_size for p in store.blobs_dir.iterdir() if p.name.endswith(".incomplete"))
        result = pull(pushed, store)
        assert result.model_id == smollm2_id
        assert store.check() == []
        big = max(result.blobs, key=lambda b: b.size)
        assert big.resumed_from >= have and big.downloaded < big.size
    finally:
        proxy.close()


def test_path_traversal_in_layer_annotation_rejected(registry: Registry, tmp_path: Path) -> None:
    ref = reference.parse(f"{registry.host}/evil/model:v1")
    client = RegistryClient(ref)
    weights = b"GGUF" + b"\0" * 28
    wd = artifact.sha256_digest(weights)
    client.push_bytes(weights, wd)
    config = b'{"config":{"format":"gguf"}}'
    cd = artifact.sha256_digest(config)
    client.push_bytes(config, cd)
    layer = artifact.descriptor(
        artifact.LAYER_GGUF, wd, len(weights), {artifact.ANNOTATION_FILEPATH: "../../../etc/cron.d/x"}
    )
    raw = artifact.go_json(
        {
            "schemaVersion": 2,
            "mediaType": artifact.MANIFEST_OCI,
            "config": artifact.descriptor(artifact.CONFIG_V02, cd, len(config)),
            "layers": [layer],
        }
    )
    client.put_manifest(raw, "v1")
    store = Store(tmp_path / "s")
    with pytest.raises(UnsafePathError):
        pull(str(ref), store)
    _assert_clean_failure(store)
    assert not store.has_blob(wd)


@pytest.mark.parametrize(
    "bad",
    [
        "/etc/passwd", "../x", "a/../../x", "a\\..\\x", "", "C:/x", "a/\x00b",
        # a file system refuses these (ENAMETOOLONG): it was a 500 when the bundle was made
        "d/" * 40 + "model.gguf", "x" * 256, "a/" + "b" * 300 + "/c",
        "/".join(["abcdefghijklmnopqrstuvwxyz"] * 40),
    ],
)  # fmt: skip
def test_safe_relpath_rejects(bad: str) -> None:
    with pytest.raises(UnsafePathError):
        artifact.safe_relpath(bad)


@pytest.mark.parametrize("good", ["model.gguf", "sub/dir/tokenizer.json", "./a/b", "d/" * 30 + "x" * 255])
def test_safe_relpath_accepts(good: str) -> None:
    assert not artifact.safe_relpath(good).startswith(("/", ".."))
