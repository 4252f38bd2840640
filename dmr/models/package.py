"""Build a model artifact from local files (`docker model package`) straight into the store.

Deterministic: the same inputs give the same manifest digest. File metadata annotations are fixed
(mode 0644, epoch mtime) and the config's `created` is `created=` if given, else SOURCE_DATE_EPOCH, else
the weights file's mtime - never "now".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmr.errors import ModelFileError, ModelFileNotFoundError, NotAModelFileError
from dmr.models import artifact, gguf_header
from dmr.models.progress import iec_size
from dmr.models.store import Store, _store_error

_SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
#: config.json keys that carry the trained context length, in DMR's order.
_CTX_KEYS = (
    "max_position_embeddings",
    "n_ctx",
    "n_positions",
    "max_length",
    "max_sequence_length",
    "model_max_length",
)


@dataclass
class Layer:
    path: Path
    media_type: str
    relpath: str


def format_parameters(n: int) -> str:
    """gguf-parser-go's parameter string without the space: 134515008 -> "134.52M"."""
    for scale, unit in ((1e15, "Q"), (1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def gguf_shards(first: Path) -> list[Path]:
    """`x-00001-of-00003.gguf` -> all three shards in order (each must exist); else just `first`."""
    m = _SHARD_RE.match(first.name)
    if not m:
        return [first]
    n = int(m.group("n"))
    shards = [first.with_name(f"{m.group('prefix')}-{i:05d}-of-{n:05d}.gguf") for i in range(1, n + 1)]
    missing = [str(s) for s in shards if not s.is_file()]
    if missing:
        raise ModelFileNotFoundError(f"GGUF shard(s) missing: {', '.join(missing)}")
    return shards


def gguf_config(shards: list[Path], context_size: int | None) -> dict[str, Any]:
    headers = [gguf_header.read_header(s) for s in shards]
    first = headers[0]
    kv = {k: gguf_header.format_value(v) for k, v in sorted(first.kv.items())}
    cfg: dict[str, Any] = {
        "format": "gguf",
        "quantization": first.file_type,
        "parameters": format_parameters(sum(h.n_parameters for h in headers)),
        "architecture": first.architecture,
        "size": iec_size(sum(h.tensor_bytes for h in headers)),
        "gguf": kv,
    }
    ctx = context_size or first.context_length
    if ctx:
        cfg["context_size"] = ctx
    return cfg


def safetensors_config(files: list[Path], root: Path, context_size: int | None) -> dict[str, Any]:
    params = 0
    dtypes: set[str] = set()
    size = 0
    for f in files:
        size += f.stat().st_size
        if f.suffix != ".safetensors":
            continue
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100 << 20:
                raise NotAModelFileError(f"{f}: safetensors header too large")
            header = json.loads(fh.read(n))
        for name, t in header.items():
            if name == "__metadata__" or not isinstance(t, dict):
                continue
            count = 1
            for d in t.get("shape", []):
                count *= int(d)
            params += count
            dtypes.add(str(t.get("dtype", "")))
    cfg: dict[str, Any] = {
        "format": "safetensors",
        "quantization": "mixed" if len(dtypes) > 1 else next(iter(dtypes), ""),
        "parameters": format_parameters(params),
        "size": iec_size(size),
    }
    ctx = context_size
    cj = root / "config.json"
    if not ctx and cj.is_file():
        with contextlib.suppress(ValueError, OSError):
            doc = json.loads(cj.read_text())
            arch = doc.get("architectures") or []
            if arch:
                cfg["architecture"] = str(arch[0])
            ctx = next((int(doc[k]) for k in _CTX_KEYS if isinstance(doc.get(k), int)), None)
    if ctx:
        cfg["context_size"] = ctx
    return cfg


def ingest(store: Store, src: Path) -> tuple[str, int]:
    """Copy `src` into the store while hashing it (one pass); returns (digest, size). A copy, not a
    link: a later edit of the user's file must not corrupt the blob."""
    tmp = store.tmp_dir / f"ingest.{os.getpid()}.{id(src)}.{src.name[:40]}"
    h = hashlib.sha256()
    size = 0
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            while chunk := fin.read(4 << 20):
                h.update(chunk)
                fout.write(chunk)
                size += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        digest = "sha256:" + h.hexdigest()
        final = store.blob_path(digest)
        if final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
        return digest, size
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, FileNotFoundError) and not src.exists():
            raise ModelFileNotFoundError(f"{src}: no such file") from exc
        raise _store_error(exc, f"cannot add {src} to the store") from exc


def _created(explicit: int | None, weights: Path) -> int:
    if explicit is not None:
        return explicit
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde and sde.isdigit():
        return int(sde)
    return int(weights.stat().st_mtime)


def package(
    store: Store,
    *,
    gguf: str | Path | None = None,
    safetensors_dir: str | Path | None = None,
    licenses: list[str | Path] | None = None,
    chat_template: str | Path | None = None,
    mmproj: str | Path | None = None,
    context_size: int | None = None,
    created: int | None = None,
    tags: list[str] | None = None,
) -> str:
    """Package local files into `store`; returns the model ID. Exactly one of gguf/safetensors_dir."""
    if (gguf is None) == (safetensors_dir is None):
        raise ModelFileError("give exactly one of --gguf or --safetensors-dir")
    layers: list[Layer] = []
    if gguf is not None:
        first = Path(gguf)
        if not first.is_file():
            raise ModelFileNotFoundError(f"{first}: no such file")
        shards = gguf_shards(first)
        cfg = gguf_config(shards, context_size)
        layers += [Layer(s, artifact.LAYER_GGUF, s.name) for s in shards]
        media_type = artifact.CONFIG_V01
        weights = first
    else:
        root = Path(str(safetensors_dir))
        if not root.is_dir():
            raise ModelFileNotFoundError(f"{root}: no such directory")
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        weights_files = [f for f in files if f.suffix == ".safetensors"]
        if not weights_files:
            raise NotAModelFileError(f"{root} has no .safetensors files")
        cfg = safetensors_config(files, root, context_size)
        for f in files:
            mt = artifact.LAYER_SAFETENSORS if f.suffix == ".safetensors" else artifact.LAYER_FILE
            layers.append(Layer(f, mt, f.relative_to(root).as_posix()))
        media_type = artifact.CONFIG_V02
        weights = weights_files[0]
    for lic in licenses or []:
        layers.append(Layer(Path(lic), artifact.LAYER_LICENSE, Path(lic).name))
    if mmproj is not None:
        layers.append(Layer(Path(mmproj), artifact.LAYER_MMPROJ, Path(mmproj).name))
    if chat_template is not None:
        layers.append(Layer(Path(chat_template), artifact.LAYER_CHAT_TEMPLATE, Path(chat_template).name))

    descriptors = []
    for layer in layers:
        digest, size = ingest(store, layer.path)
        descriptors.append(
            artifact.descriptor(
                layer.media_type, digest, size, artifact.file_annotations(layer.relpath, size)
            )
        )
    return write_model(store, media_type, cfg, descriptors, _created(created, weights), tags)


def write_model(
    store: Store,
    config_media_type: str,
    cfg: dict[str, Any],
    layers: list[dict[str, Any]],
    created: int,
    tags: list[str] | None,
) -> str:
    """Write config blob + manifest for layers already in the store; index it under `tags`."""
    config_doc = {
        "config": cfg,
        "descriptor": {"created": artifact.rfc3339(created)},
        "rootfs": {"type": "rootfs", "diff_ids": [d["digest"] for d in layers]},
    }
    config_bytes = artifact.go_json(config_doc)
    store.put_blob_bytes(config_bytes)
    manifest = artifact.build_manifest(config_media_type, config_bytes, layers)
    return store.add(manifest, tags or [])


def repackage(store: Store, source: str, target: str, context_size: int) -> str:
    """New manifest + config with `context_size`; layers are shared with `source` (DMR's
    `/models/{src}/repackage`)."""
    _model_id, manifest = store.manifest(source)
    cfg_desc = manifest["config"]
    doc = json.loads(store.read_blob(cfg_desc["digest"]))
    if cfg_desc["mediaType"] == artifact.CONFIG_CNCF:
        raise ModelFileError("repackaging a CNCF ModelPack artifact is not supported")
    doc.setdefault("config", {})["context_size"] = context_size
    config_bytes = artifact.go_json(doc)
    store.put_blob_bytes(config_bytes)
    raw = artifact.build_manifest(cfg_desc["mediaType"], config_bytes, manifest["layers"])
    return store.add(raw, [target])
