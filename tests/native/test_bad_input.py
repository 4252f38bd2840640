"""Bad model files and prompts raise typed errors; each case runs in a subprocess so that a crash
(a segfault or abort inside llama.cpp) fails the test instead of killing pytest."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, sys
from dmr import _native as n
kind, path = sys.argv[1], sys.argv[2]
result = {}
try:
    if kind == "info":
        n.read_gguf_info(path)
    elif kind == "load":
        n.Model.load(path)
    elif kind == "long-prompt":
        m = n.Model.load(path)
        s = n.Session.create(m, n_ctx=256, n_threads=1)
        s.start(" ".join(["token"] * 1000))
    result["error"] = None
except Exception as e:
    result["error"] = type(e).__name__
    result["message"] = str(e)
    result["builtin"] = [c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins"]
print(json.dumps(result))
"""


def probe(kind: str, path: Path | str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, kind, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"probe crashed (rc={proc.returncode}): {proc.stderr[-2000:]}"
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def gguf_header(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> dict[str, tuple[Path, str]]:
    d = tmp_path_factory.mktemp("bad")
    data = smollm2_path.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, content: bytes, expected: str) -> None:
        p = d / f"{name}.gguf"
        p.write_bytes(content)
        cases[name] = (p, expected)

    cases["missing"] = (d / "does-not-exist.gguf", "ModelFileNotFoundError")
    (d / "a-directory.gguf").mkdir()
    cases["directory"] = (d / "a-directory.gguf", "NotAModelFileError")
    add("random-bytes", os.urandom(4096), "NotAModelFileError")
    add("empty", b"", "NotAModelFileError")
    for offset in (3, 10, 24, 1000, 200_000, len(data) // 2, len(data) - 1):
        expected = "NotAModelFileError" if offset < 4 else "CorruptModelError"
        add(f"truncated-at-{offset}", data[:offset], expected)
    add("absurd-tensor-count", gguf_header(2**62, 1) + data[24:4096], "CorruptModelError")
    add("absurd-kv-count", gguf_header(1, 2**60) + data[24:4096], "CorruptModelError")
    # first key's string length claims an exabyte
    add("absurd-key-length", data[:24] + struct.pack("<Q", 2**60) + data[32:4096], "CorruptModelError")
    for key in ("llama.block_count", "llama.embedding_length"):
        add(f"zero-{key}", with_u32(data, key, 0), "CorruptModelError")
    return cases


def with_u32(data: bytes, key: str, value: int) -> bytes:
    """`data` (a GGUF) with the u32 value of header key `key` replaced (length-prefixed key, type, value)."""
    at = data.index(struct.pack("<Q", len(key)) + key.encode())
    type_at = at + 8 + len(key)
    assert struct.unpack_from("<I", data, type_at)[0] == 4, "expected a u32 key"  # GGUF_TYPE_UINT32
    return data[: type_at + 4] + struct.pack("<I", value) + data[type_at + 8 :]


CASES = [
    "missing",
    "directory",
    "random-bytes",
    "empty",
    "truncated-at-3",
    "truncated-at-10",
    "truncated-at-24",
    "truncated-at-1000",
    "truncated-at-200000",
    "absurd-tensor-count",
    "absurd-kv-count",
    "absurd-key-length",
    # llama.cpp asserted (the process died) on a model declaring zero layers
    "zero-llama.block_count",
    "zero-llama.embedding_length",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_file_header(bad_files: dict[str, tuple[Path, str]], case: str) -> None:
    path, expected = bad_files[case]
    # a header that reads but declares impossible values: its metadata can be shown, the model not loaded
    kinds = ("load",) if case.startswith("zero-") else ("info", "load")
    for kind in kinds:
        result = probe(kind, path)
        assert result["error"] == expected, (kind, result)
        assert str(path) in str(result["message"])


def test_truncated_tensor_data(bad_files: dict[str, tuple[Path, str]]) -> None:
    for name, (path, _) in bad_files.items():
        if name.startswith("truncated-at-") and int(name.rsplit("-", 1)[1]) > 1_000_000:
            result = probe("load", path)
            assert result["error"] == "CorruptModelError", result
            assert "truncated" in str(result["message"])


def test_errors_are_builtin_subclasses(bad_files: dict[str, tuple[Path, str]]) -> None:
    assert "FileNotFoundError" in probe("load", bad_files["missing"][0])["builtin"]  # type: ignore[operator]
    assert "ValueError" in probe("load", bad_files["random-bytes"][0])["builtin"]  # type: ignore[operator]


def test_unsupported_architecture(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "alien.gguf"
    writer = gguf.GGUFWriter(str(path), arch="alienformer")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = probe("load", path)
    assert result["error"] == "UnsupportedModelError", result
    assert "alienformer" in str(result["message"])


def test_prompt_longer_than_context(smollm2_path: Path) -> None:
    result = probe("long-prompt", smollm2_path)
    assert result["error"] == "ContextFullError", result
    assert "256" in str(result["message"]) and "1000" in str(result["message"])
