"""How much memory a GGUF model takes resident: the llama.cpp backend's estimate, made before any load so
that admission is planned, not discovered by an out-of-memory failure."""

from __future__ import annotations

from pathlib import Path

from dmr.models.gguf_header import read_header

#: Compute buffers, the output logits and allocator slack, beyond weights and KV.
COMPUTE_OVERHEAD = 96 << 20


def estimate_memory(path: Path, n_ctx_total: int) -> int:
    """Bytes a model needs resident: file size (weights, mmapped or not) + f16 KV for every cell."""
    shards = sorted(path.parent.glob("model-*-of-*.gguf")) if path.name.startswith("model-0") else [path]
    weights = sum(p.stat().st_size for p in shards)
    try:
        kv = read_header(path).kv
    except Exception:  # an unreadable header is reported by the real load, with a better message
        return weights + COMPUTE_OVERHEAD
    arch = str(kv.get("general.architecture", ""))

    def num(key: str, default: int) -> int:
        v = kv.get(f"{arch}.{key}")
        return int(v) if isinstance(v, int) else default

    n_layer = num("block_count", 32)
    n_embd = num("embedding_length", 4096)
    n_head = num("attention.head_count", 32) or 1
    n_head_kv = num("attention.head_count_kv", n_head) or n_head
    k_len = num("attention.key_length", n_embd // n_head)
    v_len = num("attention.value_length", n_embd // n_head)
    kv_bytes = n_layer * n_ctx_total * n_head_kv * (k_len + v_len) * 2
    return weights + kv_bytes + COMPUTE_OVERHEAD
