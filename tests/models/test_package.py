"""Packaging: config from the GGUF header, deterministic digests, shards, extra layers, safetensors."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from dmr.errors import ModelFileNotFoundError, NotAModelFileError
from dmr.models import artifact, gguf_header
from dmr.models.package import package, repackage
from dmr.models.store import Store

from .helpers import write_gguf


def _manifest(store: Store, ref: str) -> dict:  # type: ignore[type-arg]
    return store.manifest(ref)[1]


def test_header_reader_matches_gguf_package_and_is_fast(smollm2_path: Path) -> None:
    import gguf

    t0 = time.perf_counter()
    h = gguf_header.read_header(smollm2_path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, elapsed
    ref = gguf.GGUFReader(smollm2_path)
    for name, field in ref.fields.items():
        if name.startswith("GGUF.") or len(field.data) > gguf_header.MAX_ARRAY:
            assert name not in h.kv
            continue
        value = field.contents()
        if isinstance(value, float):
            assert h.kv[name] == pytest.approx(value)
        else:
            assert h.kv[name] == value, name
    assert h.n_parameters == sum(int(t.n_elements) for t in ref.tensors)
    assert h.tensor_bytes == sum(int(t.n_bytes) for t in ref.tensors)


def test_smollm2_config(store: Store, smollm2_path: Path) -> None:
    t0 = time.perf_counter()
    mid = package(store, gguf=smollm2_path, tags=["ai/smollm2"])
    model = store.get("ai/smollm2")
    assert model.id == mid
    cfg = model.config
    assert cfg["format"] == "gguf"
    assert cfg["quantization"] == "Q4_1"
    assert cfg["architecture"] == "llama"
    assert cfg["parameters"] == "134.52M"
    assert cfg["size"] == "92.10MiB"
    assert cfg["context_size"] == 8192
    assert cfg["gguf"]["llama.context_length"] == "8192"
    assert cfg["gguf"]["llama.attention.layer_norm_rms_epsilon"] == "1e-05"
    assert cfg["gguf"]["tokenizer.ggml.add_bos_token"] == "false"
    assert "tokenizer.ggml.tokens" not in cfg["gguf"]  # >50 elements: skipped, as DMR does
    assert model.created == int(smollm2_path.stat().st_mtime)
    manifest = _manifest(store, mid)
    assert manifest["mediaType"] == artifact.MANIFEST_OCI
    assert manifest["config"]["mediaType"] == artifact.CONFIG_V01
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == artifact.LAYER_GGUF and layer["size"] == smollm2_path.stat().st_size
    assert layer["annotations"][artifact.ANNOTATION_FILEPATH] == smollm2_path.name
    assert store.blob_path(layer["digest"]).read_bytes()[:4] == b"GGUF"
    assert time.perf_counter() - t0 < 10


def test_deterministic_digest(tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "m.gguf")
    a = package(Store(tmp_path / "a"), gguf=src, created=1000)
    b = package(Store(tmp_path / "b"), gguf=src, created=1000)
    assert a == b
    c = package(Store(tmp_path / "c"), gguf=src, created=1001)
    assert c != a


def test_context_size_and_repackage_share_layers(store: Store, tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "m.gguf", ctx=256)
    base = package(store, gguf=src, created=1, tags=["ai/m:base"])
    assert store.get(base).config["context_size"] == 256
    big = package(store, gguf=src, created=1, context_size=1024, tags=["ai/m:ctx"])
    assert store.get(big).config["context_size"] == 1024
    rp = repackage(store, "ai/m:base", "ai/m:rp", 4096)
    assert rp not in (base, big)
    m_base, m_rp = _manifest(store, base), _manifest(store, rp)
    assert m_rp["layers"] == m_base["layers"]
    assert store.get("ai/m:rp").config["context_size"] == 4096
    store.delete("ai/m:base")
    assert store.has_blob(m_rp["layers"][0]["digest"])  # still used by the repackaged model


def test_sharded_gguf_one_layer_per_shard_in_order(store: Store, tmp_path: Path) -> None:
    shards = [write_gguf(tmp_path / f"big-{i:05d}-of-00003.gguf", n_tensors=i) for i in (1, 2, 3)]
    mid = package(store, gguf=shards[0], created=1)
    layers = _manifest(store, mid)["layers"]
    assert [la["annotations"][artifact.ANNOTATION_FILEPATH] for la in layers] == [s.name for s in shards]
    assert all(la["mediaType"] == artifact.LAYER_GGUF for la in layers)
    assert store.get(mid).config["parameters"] == str(32 * 6)
    shards[2].unlink()
    with pytest.raises(ModelFileNotFoundError):
        package(store, gguf=shards[0])


def test_license_template_mmproj_layers(store: Store, tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "m.gguf")
    (tmp_path / "LICENSE").write_text("MIT")
    (tmp_path / "NOTICE").write_text("notice")
    (tmp_path / "t.jinja").write_text("{{ messages }}")
    proj = write_gguf(tmp_path / "mmproj-f16.gguf", arch="clip")
    mid = package(
        store,
        gguf=src,
        licenses=[tmp_path / "LICENSE", tmp_path / "NOTICE"],
        chat_template=tmp_path / "t.jinja",
        mmproj=proj,
        created=1,
    )
    types = [la["mediaType"] for la in _manifest(store, mid)["layers"]]
    assert types == [
        artifact.LAYER_GGUF,
        artifact.LAYER_LICENSE,
        artifact.LAYER_LICENSE,
        artifact.LAYER_MMPROJ,
        artifact.LAYER_CHAT_TEMPLATE,
    ]


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def test_safetensors_dir(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "st"
    (d / "sub").mkdir(parents=True)
    _safetensors(d / "model.safetensors", {"a": ("BF16", [4, 8]), "b": ("BF16", [8])})
    (d / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 2048})
    )
    (d / "sub" / "tokenizer.json").write_text("{}")
    mid = package(store, safetensors_dir=d, created=1)
    cfg = store.get(mid).config
    assert cfg["format"] == "safetensors" and cfg["parameters"] == "40" and cfg["quantization"] == "BF16"
    assert cfg["context_size"] == 2048 and cfg["architecture"] == "LlamaForCausalLM"
    manifest = _manifest(store, mid)
    assert manifest["config"]["mediaType"] == artifact.CONFIG_V02
    paths = {la["annotations"][artifact.ANNOTATION_FILEPATH]: la["mediaType"] for la in manifest["layers"]}
    assert paths == {
        "config.json": artifact.LAYER_FILE,
        "model.safetensors": artifact.LAYER_SAFETENSORS,
        "sub/tokenizer.json": artifact.LAYER_FILE,
    }


def test_rejects_non_gguf(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf at all, just bytes" * 4)
    with pytest.raises(NotAModelFileError):
        package(store, gguf=bad)
    assert store.list() == []
