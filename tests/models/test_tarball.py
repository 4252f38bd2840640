"""Export a model as a tar and load it back; hostile archives are rejected with nothing stored."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from dmr.errors import DigestMismatchError, DmrError, StoreError, UnsafePathError
from dmr.models import tarball
from dmr.models.store import Store


def test_export_load_roundtrip(source_store: Store, smollm2_id: str, tmp_path: Path) -> None:
    tar_path = tmp_path / "m.tar"
    with tar_path.open("wb") as f:
        assert tarball.export(source_store, "ai/smollm2", f) == smollm2_id
    with tarfile.open(tar_path) as t:
        names = t.getnames()
    files = source_store.get(smollm2_id).files
    assert names[0] == "manifest.json"
    assert sorted(names[1:]) == sorted(f"blobs/sha256/{d[7:]}" for d in files)
    dest = Store(tmp_path / "dest")
    events: list[dict] = []  # type: ignore[type-arg]
    with tar_path.open("rb") as f:
        assert tarball.load(dest, f, progress=events.append) == smollm2_id
    assert dest.get(smollm2_id).tags == []  # untagged: the CLI tags afterwards
    assert dest.read_manifest(smollm2_id) == source_store.read_manifest(smollm2_id)
    for d in files:
        assert dest.blob_path(d).read_bytes() == source_store.blob_path(d).read_bytes()
    assert events[-1]["type"] == "success"
    assert dest.check() == []


def _tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for info, data in entries:
            info.size = len(data)
            t.addfile(info, io.BytesIO(data) if info.isfile() else None)
    buf.seek(0)
    return buf


@pytest.mark.parametrize(
    "name", ["../evil", "/etc/passwd", "blobs/sha256/../../x", "blobs/sha256/zz", "other.txt"]
)
def test_rejects_unexpected_entries(name: str, store: Store) -> None:
    with pytest.raises(UnsafePathError):
        tarball.load(store, _tar([(tarfile.TarInfo(name), b"x")]))
    assert store.list() == [] and not any(store.blobs_dir.iterdir())


def test_rejects_links(store: Store) -> None:
    link = tarfile.TarInfo("blobs/sha256/" + "a" * 64)
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(UnsafePathError):
        tarball.load(store, _tar([(link, b"")]))
    assert not any(store.blobs_dir.iterdir())


def test_rejects_mismatched_blob(store: Store) -> None:
    with pytest.raises(DigestMismatchError):
        tarball.load(store, _tar([(tarfile.TarInfo("blobs/sha256/" + "b" * 64), b"not that")]))
    assert not any(store.blobs_dir.iterdir()) and not any(store.tmp_dir.iterdir())


def _blob_entry(data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo("blobs/sha256/" + hashlib.sha256(data).hexdigest()), data


def test_a_sparse_entry_is_refused_before_anything_is_written(store: Store, tmp_path: Path) -> None:
    """10 KB of GNU sparse tar stood for a 1 GiB blob, which stayed in the store for good."""
    size = 1 << 30
    digest = hashlib.sha256()
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        digest.update(zeros)
    name = f"blobs/sha256/{digest.hexdigest()}"
    (tmp_path / "src" / "blobs" / "sha256").mkdir(parents=True)
    with (tmp_path / "src" / name).open("wb") as f:
        f.truncate(size)
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "-C", str(tmp_path / "src"), "--sparse", "-cf", str(archive), name], check=True)
    assert archive.stat().st_size < 64 << 10
    with archive.open("rb") as f, pytest.raises(UnsafePathError, match="sparse"):
        tarball.load(store, f)
    assert not any(store.blobs_dir.iterdir()) and not any(store.tmp_dir.iterdir())


def test_blobs_of_a_failed_load_or_not_in_its_manifest_are_removed(
    source_store: Store, smollm2_id: str, store: Store
) -> None:
    # a blob, then a manifest that is not one: the load fails and leaves nothing
    with pytest.raises(DmrError):
        tarball.load(store, _tar([_blob_entry(b"orphan to be"), (tarfile.TarInfo("manifest.json"), b"{}")]))
    assert not any(store.blobs_dir.iterdir())
    # a real model plus a blob its manifest does not name: the model stays, the stray blob goes
    buf = io.BytesIO()
    tarball.export(source_store, "ai/smollm2", buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as t:
        entries = [(m, t.extractfile(m).read()) for m in t.getmembers()]  # type: ignore[union-attr]
    stray_info, stray = _blob_entry(b"stray")
    assert tarball.load(store, _tar([*entries, (stray_info, stray)])) == smollm2_id
    assert not store.has_blob("sha256:" + hashlib.sha256(stray).hexdigest())
    assert store.check() == [] and set(store.get(smollm2_id).files) == {
        "sha256:" + p.name for p in store.blobs_dir.iterdir()
    }


def test_a_blob_larger_than_the_free_disk_is_refused_before_writing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        tarball.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1 << 20)
    )  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="to spare") as info:
        tarball.load(store, _tar([_blob_entry(b"x" * 4096)]))
    assert info.value.http_status == 507
    assert not any(store.blobs_dir.iterdir()) and not any(store.tmp_dir.iterdir())
