from __future__ import annotations

import time
from pathlib import Path

from dmr import _native as native


def test_smollm2_metadata(smollm2_path: Path) -> None:
    info = native.read_gguf_info(smollm2_path)
    assert info["architecture"] == "llama"
    assert info["context_length"] == 8192
    assert info["block_count"] == 30
    assert info["quantization"] == "Q4_1"
    assert info["embedding_length"] == 576
    assert info["vocab_size"] == 49152
    assert info["file_size"] == smollm2_path.stat().st_size
    assert 130_000_000 < info["parameters"] < 140_000_000
    assert "<|im_start|>" in info["chat_template"]
    assert info["special_tokens"]["eos"] == 2
    assert info["tensor_types"]["q4_1"] > 100
    # long arrays are summarised, not materialised
    tokens = info["metadata"]["tokenizer.ggml.tokens"]
    assert isinstance(tokens, native.GgufArray) and len(tokens) == 49152


def test_metadata_is_fast(smollm2_path: Path) -> None:
    native.read_gguf_info(smollm2_path)  # warm the page cache
    start = time.perf_counter()
    for _ in range(5):
        native.read_gguf_info(smollm2_path)
    per_read = (time.perf_counter() - start) / 5
    assert per_read < 0.1, f"reading metadata took {per_read * 1000:.0f} ms"
