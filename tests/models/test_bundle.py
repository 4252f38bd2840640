"""Bundles: DMR's runtime directory, hard-linked to blobs, built atomically, traversal-proof."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmr.errors import UnsafePathError
from dmr.models import artifact
from dmr.models.bundle import bundle, layout, model_path
from dmr.models.package import package
from dmr.models.store import Store

from .helpers import write_gguf


def test_bundle_of_real_model(source_store: Store, smollm2_id: str, smollm2_path: Path) -> None:
    root = bundle(source_store, "ai/smollm2")
    assert root == source_store.bundles_dir / smollm2_id[7:]
    gguf = model_path(source_store, "ai/smollm2")
    assert gguf == root / "model" / "model.gguf"
    assert gguf.stat().st_size == smollm2_path.stat().st_size
    blob = source_store.blob_path(source_store.manifest(smollm2_id)[1]["layers"][0]["digest"])
    assert gguf.stat().st_ino == blob.stat().st_ino  # hard link, no copy
    assert '"context_size":8192' in (root / "config.json").read_text()


def test_shards_template_mmproj(store: Store, tmp_path: Path) -> None:
    shards = [write_gguf(tmp_path / f"x-{i:05d}-of-00002.gguf", n_tensors=i) for i in (1, 2)]
    (tmp_path / "t.jinja").write_text("{{x}}")
    (tmp_path / "LICENSE").write_text("MIT")
    proj = write_gguf(tmp_path / "p.gguf", arch="clip")
    mid = package(
        store,
        gguf=shards[0],
        chat_template=tmp_path / "t.jinja",
        mmproj=proj,
        licenses=[tmp_path / "LICENSE"],
        created=1,
    )
    root = bundle(store, mid)
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert names == [
        "config.json",
        "model/model-00001-of-00002.gguf",
        "model/model-00002-of-00002.gguf",
        "model/model.mmproj",
        "model/template.jinja",
    ]
    assert model_path(store, mid).name == "model-00001-of-00002.gguf"


@pytest.mark.parametrize("path", ["../../escape", "/abs", "a/../../b"])
def test_traversal_in_annotation_rejected(path: str) -> None:
    manifest = {
        "layers": [
            {
                "mediaType": artifact.LAYER_FILE,
                "digest": "sha256:" + "a" * 64,
                "annotations": {artifact.ANNOTATION_FILEPATH: path},
            }
        ]
    }
    with pytest.raises(UnsafePathError):
        layout(manifest)


def test_collision_rejected() -> None:
    layer = {
        "mediaType": artifact.LAYER_FILE,
        "digest": "sha256:" + "a" * 64,
        "annotations": {artifact.ANNOTATION_FILEPATH: "config.json"},
    }
    with pytest.raises(UnsafePathError):
        layout({"layers": [layer, dict(layer)]})


def test_concurrent_first_uses_always_see_a_complete_bundle(store: Store, tmp_path: Path) -> None:
    """Requests for a model that arrive together each resolve its weights (the scheduler does this before
    it dedups loads): none may see the bundle while another thread rebuilds it."""
    import shutil
    import threading

    ref = package(store, gguf=write_gguf(tmp_path / "m.gguf"), tags=["ai/race"])

    def resolve(barrier: threading.Barrier, failures: list[BaseException]) -> None:
        barrier.wait()
        try:
            assert model_path(store, ref).is_file()
        except Exception as exc:
            failures.append(exc)

    for _ in range(30):
        shutil.rmtree(store.bundles_dir, ignore_errors=True)
        store.bundles_dir.mkdir(parents=True, exist_ok=True)
        barrier, failures = threading.Barrier(8), []
        threads = [threading.Thread(target=resolve, args=(barrier, failures)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[0]
