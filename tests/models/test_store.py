"""The store: DMR's layout, tag/untag/resolve across reference forms, delete semantics, crash safety."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dmr.errors import ModelConflictError, ModelNotFoundError, StoreError
from dmr.models import store as store_mod
from dmr.models.store import Store

from .helpers import tiny_model


def test_layout(store: Store) -> None:
    mid = tiny_model(store, b"weights", ["ai/x"])
    root = store.root
    assert json.loads((root / "layout.json").read_text()) == {"version": "1.0.0"}
    index = json.loads((root / "models.json").read_text())
    entry = index["models"][0]
    assert entry["id"] == mid and entry["tags"] == ["ai/x:latest"]
    manifest = json.loads((root / "manifests/sha256" / mid[7:]).read_bytes())
    # files = layers then config, as DMR writes them; each blob exists under blobs/sha256/<hex>
    assert entry["files"] == [manifest["layers"][0]["digest"], manifest["config"]["digest"]]
    for f in entry["files"]:
        assert (root / "blobs/sha256" / f[7:]).is_file()
    assert (root / "bundles/sha256").is_dir()
    assert store.check() == []


def test_resolve_every_form(store: Store) -> None:
    mid = tiny_model(store, b"w", ["ai/smollm2:latest"])
    hexid = mid[7:]
    forms = [
        "smollm2",
        "ai/smollm2",
        "ai/smollm2:latest",
        "docker.io/ai/smollm2:latest",
        "index.docker.io/ai/smollm2",
        " SmolLM2 ",
        "AI/SmolLM2",  # DMR lowercases the name (issue #18, 7)
        "Docker.io/AI/SmolLM2:latest",
        mid,
        hexid,
        hexid[:12],
        f"ai/smollm2@{mid}",
    ]
    for form in forms:
        assert store.get(form).id == mid, form
    with pytest.raises(
        ModelNotFoundError, match=r"model AI/SmolLM2:Other not found \(looked for ai/smollm2:Other\)"
    ):
        store.get("AI/SmolLM2:Other")  # the refusal names what was asked
    with pytest.raises(ModelNotFoundError):
        store.get("sha256:" + "0" * 64)


def test_fully_qualified_tags_from_upstream_store(store: Store) -> None:
    """Stores written by current upstream hold `docker.io/...` tags: they match and print short."""
    mid = tiny_model(store, b"w", [])
    index = json.loads((store.root / "models.json").read_text())
    index["models"][0]["tags"] = ["docker.io/ai/gemma3:latest"]
    (store.root / "models.json").write_text(json.dumps(index))
    assert store.get("ai/gemma3").id == mid
    assert store.get("gemma3").tags == ["ai/gemma3:latest"]


def test_tag_moves_between_models(store: Store) -> None:
    a = tiny_model(store, b"a", ["ai/m:1"])
    b = tiny_model(store, b"b", ["ai/m:2"])
    assert store.tag(b, "ai/m:1") == "ai/m:1"
    assert store.get("ai/m:1").id == b
    assert store.get(a).tags == []
    assert sorted(store.get(b).tags) == ["ai/m:1", "ai/m:2"]


def test_delete_by_tag_untags_until_last(store: Store) -> None:
    mid = tiny_model(store, b"w", ["ai/x:1", "ai/x:2"])
    assert store.delete("ai/x:1") == [{"Untagged": "ai/x:1"}]
    assert store.get(mid).tags == ["ai/x:2"]
    files = store.get(mid).files
    assert store.delete("ai/x:2") == [{"Untagged": "ai/x:2"}, {"Deleted": mid}]
    assert not store.has_model(mid)
    assert not store.manifest_path(mid).exists()
    assert not any(store.has_blob(f) for f in files)


def test_delete_by_id_needs_force_with_several_tags(store: Store) -> None:
    mid = tiny_model(store, b"w", ["ai/x:1", "ai/x:2"])
    with pytest.raises(ModelConflictError) as err:
        store.delete(mid[7:19])
    assert err.value.http_status == 409
    result = store.delete(mid[7:19], force=True)
    assert result == [{"Untagged": "ai/x:1"}, {"Untagged": "ai/x:2"}, {"Deleted": mid}]
    assert store.list() == []


def test_delete_by_id_single_tag_and_untagged(store: Store) -> None:
    mid = tiny_model(store, b"w", ["ai/x"])
    assert store.delete(mid) == [{"Untagged": "ai/x:latest"}, {"Deleted": mid}]
    mid2 = tiny_model(store, b"w2", [])
    assert store.delete(mid2) == [{"Deleted": mid2}]


def test_delete_keeps_blobs_other_models_use(store: Store) -> None:
    a = tiny_model(store, b"a", ["ai/a"], shared=b"LICENSE")
    b = tiny_model(store, b"b", ["ai/b"], shared=b"LICENSE")
    shared = store.get(a).files[1]
    assert shared in store.get(b).files
    only_a = store.get(a).files[0]
    store.delete("ai/a")
    assert store.has_blob(shared)
    assert not store.has_blob(only_a)
    store.delete("ai/b")
    assert not store.has_blob(shared)


def test_missing_model(store: Store) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        store.delete("ai/nope")
    assert err.value.http_status == 404


def test_crash_while_writing_index_keeps_old_index(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    mid = tiny_model(store, b"w", ["ai/x"])
    before = (store.root / "models.json").read_bytes()
    real_replace = os.replace

    def crash(src: str, dst: str) -> None:
        if str(dst).endswith("models.json"):
            raise OSError(5, "simulated crash before rename")
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", crash)
    with pytest.raises(StoreError):
        store.tag(mid, "ai/y")
    monkeypatch.undo()
    assert (store.root / "models.json").read_bytes() == before
    assert not [p for p in store.root.iterdir() if p.is_file() and p.name.endswith(".tmp")]
    assert store.check() == []


def test_gc_removes_orphans_from_a_crash(store: Store) -> None:
    mid = tiny_model(store, b"w", ["ai/x"])
    orphan = store.put_blob_bytes(b"orphan from an interrupted pull")
    (store.manifests_dir / ("f" * 64)).write_bytes(b"{}")
    size = store.blob_path(orphan).stat().st_size + 2
    assert store.unreferenced_bytes() == size  # the orphan blob and the 2-byte manifest
    removed = store.gc()
    assert store.unreferenced_bytes() == 0
    assert any(orphan[7:] in r for r in removed)
    assert not store.has_blob(orphan)
    assert store.get(mid).files and store.check() == []


def test_add_refuses_missing_blobs(store: Store) -> None:
    mid = tiny_model(store, b"w", ["ai/x"])
    raw = store.read_manifest(mid)
    other = Store(store.root.parent / "other")
    with pytest.raises(StoreError):
        other.add(raw, ["ai/x"])
    assert other.list() == []


def test_purge(store: Store, tmp_path: Path) -> None:
    tiny_model(store, b"w", ["ai/x"])
    store.purge()
    assert store.list() == [] and not list(store.blobs_dir.iterdir())
    (store.root / "layout.json").unlink()
    with pytest.raises(StoreError):
        store.purge()
