"""Runtime bundles: `bundles/sha256/<id>/{config.json, model/...}`, the directory a backend loads.

Created lazily on first use, as DMR does, with files hard-linked to the blobs (no extra space; a copy
where links are impossible). Built in a temp directory and renamed into place, so a half-built bundle
is never visible; an unparsable bundle is rebuilt. Layer paths come from annotations we do not trust:
every one goes through `artifact.safe_relpath`, and two layers may not claim the same path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dmr.errors import UnsafePathError
from dmr.models import artifact
from dmr.models.store import Store

_FIXED_NAMES = {artifact.LAYER_MMPROJ: "model.mmproj", artifact.LAYER_CHAT_TEMPLATE: "template.jinja"}
_GGUF_TYPES = (artifact.LAYER_GGUF, artifact.CNCF_WEIGHT_GGUF)


def layout(manifest: dict[str, Any]) -> dict[str, str]:
    """bundle-relative path -> blob digest, following DMR's naming (reference §3.2, §3.5)."""
    layers = manifest["layers"]
    ggufs = [la for la in layers if la["mediaType"] in _GGUF_TYPES]
    out: dict[str, str] = {}

    def put(path: str, digest: str) -> None:
        rel = "model/" + artifact.safe_relpath(path)
        if rel in out:
            raise UnsafePathError(f"two layers claim {path!r}")
        out[rel] = digest

    for i, layer in enumerate(ggufs, 1):
        name = "model.gguf" if len(ggufs) == 1 else f"model-{i:05d}-of-{len(ggufs):05d}.gguf"
        put(name, layer["digest"])
    for layer in layers:
        mt = layer["mediaType"]
        path = (layer.get("annotations") or {}).get(artifact.ANNOTATION_FILEPATH)
        if mt in _GGUF_TYPES or mt == artifact.LAYER_LICENSE:
            continue
        if mt in _FIXED_NAMES:
            put(_FIXED_NAMES[mt], layer["digest"])
        elif path:
            put(str(path), layer["digest"])
    return out


def _complete(final: Path) -> bool:
    # config.json is written last, before the directory is renamed into place: readable means complete.
    with contextlib.suppress(OSError, ValueError):
        json.loads((final / "config.json").read_text())
        return True
    return False


def bundle(store: Store, ref: str) -> Path:
    """The bundle directory of the model `ref` names, created if missing or broken."""
    model_id, manifest = store.manifest(ref)
    final = store.bundles_dir / model_id.removeprefix("sha256:")
    if _complete(final):
        return final
    files = layout(manifest)
    cfg_doc = json.loads(store.read_blob(manifest["config"]["digest"]))
    with store.lock(f"bundle-{model_id}"):
        # Requests arriving together all find no bundle; the first to get the lock builds it. The others
        # must take that one, not rebuild it: removing a complete bundle to replace it would pull it from
        # under a thread already reading it (seen: "model has no GGUF weights" under concurrent first use).
        if _complete(final):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=store.bundles_dir))
        try:
            for rel, digest in files.items():
                dst = tmp / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(store.blob_path(digest), dst)
                except OSError:
                    shutil.copyfile(store.blob_path(digest), dst)
            (tmp / "config.json").write_bytes(artifact.go_json(cfg_doc.get("config", {})))
            shutil.rmtree(final, ignore_errors=True)  # a broken bundle: nothing complete is removed
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def model_path(store: Store, ref: str) -> Path:
    """The file llama.cpp gets: the (first shard of the) GGUF in the bundle."""
    root = bundle(store, ref) / "model"
    for name in ("model.gguf", "model-00001-of-"):
        hits = sorted(root.glob(name + ("*" if name.endswith("-") else "")))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"model {ref} has no GGUF weights")
