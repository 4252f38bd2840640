"""Export a model as a tar and load it back; hostile archives are rejected with nothing stored."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dmr.errors import DigestMismatchError, UnsafePathError
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
