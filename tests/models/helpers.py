"""Small builders shared by the model tests (real store, real files; nothing faked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmr.models import artifact
from dmr.models.package import write_model
from dmr.models.store import Store


def tiny_model(store: Store, payload: bytes, tags: list[str], shared: bytes | None = None) -> str:
    """A model whose GGUF layer is `payload` (plus an optional `shared` license layer)."""
    layers = []
    for data, mt in ((payload, artifact.LAYER_GGUF), (shared, artifact.LAYER_LICENSE)):
        if data is None:
            continue
        digest = store.put_blob_bytes(data)
        layers.append(artifact.descriptor(mt, digest, len(data), artifact.file_annotations("f", len(data))))
    return write_model(store, artifact.CONFIG_V01, {"format": "gguf"}, layers, 1, tags)


def write_gguf(path: Path, arch: str = "llama", ctx: int = 256, n_tensors: int = 2, **extra: int) -> Path:
    """A small valid GGUF written by the `gguf` package (the reference implementation)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(ctx)
    w.add_file_type(1)
    w.add_token_list([f"t{i}" for i in range(100)])
    for k, v in extra.items():
        w.add_uint32(k, v)
    for i in range(n_tensors):
        w.add_tensor(f"blk.{i}.weight", np.full((4, 8), i, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
