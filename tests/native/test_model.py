from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from dmr import _native as native
from dmr import errors

CORPUS = [
    "Hello, world!",
    "  leading and trailing spaces  ",
    "Tabs\tand\nnewlines\r\nmixed",
    "Unicode: naïve café, Straße, 日本語のテキスト, Ελληνικά, русский",
    "Emoji 🎉🚀👩‍💻 and symbols ∑∫√∞ ≠ ≤",
    "def f(x):\n    return {'a': [1, 2, 3]}  # code\n",
    "URLs https://example.com/a?b=c&d=e#frag and emails a.b@c.de",
    "1234567890 3.14159 -42 1e-9",
    "",
    "a" * 300,
]


def test_model_facts(model: Any) -> None:
    assert model.n_layer == 30
    assert model.n_ctx_train == 8192
    assert model.n_vocab == 49152
    assert model.n_embd == 576
    assert model.size > 50_000_000
    assert "Q4_1" in model.description
    assert model.meta("general.architecture") == "llama"
    assert model.meta("no.such.key") is None
    assert "<|im_start|>" in model.chat_template


@pytest.mark.parametrize("text", CORPUS)
def test_tokenize_round_trip(model: Any, text: str) -> None:
    tokens = model.tokenize(text, add_special=False)
    assert all(isinstance(t, int) for t in tokens)
    assert model.detokenize(tokens) == text


def test_special_tokens(model: Any) -> None:
    text = "<|im_start|>user\nhi<|im_end|>"
    parsed = model.tokenize(text, add_special=False, parse_special=True)
    literal = model.tokenize(text, add_special=False, parse_special=False)
    assert parsed[0] == 1 and len(parsed) < len(literal)  # <|im_start|> is token 1 in SmolLM2
    assert model.detokenize(parsed, unparse_special=True) == text
    assert "<|im_start|>" not in model.detokenize(parsed, unparse_special=False)
    assert model.is_eog(model.special_tokens["eos"])


def test_detokenize_rejects_bad_ids(model: Any) -> None:
    with pytest.raises(errors.InvalidRequestError):
        model.detokenize([1, 2, 10**6])
    with pytest.raises(ValueError):  # dmr errors are builtin subclasses too
        model.detokenize([-5])


def test_progress_callback_reports_and_cancels(smollm2_path: Path) -> None:
    seen: list[float] = []

    def record(p: float) -> bool:
        seen.append(p)
        return True

    m = native.Model.load(smollm2_path, progress=record)
    assert m.n_layer == 30
    assert seen and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)

    with pytest.raises(errors.AbortedError):
        native.Model.load(smollm2_path, progress=lambda p: False)

    class Stop(Exception):
        pass

    def boom(p: float) -> bool:
        raise Stop

    with pytest.raises(Stop):
        native.Model.load(smollm2_path, progress=boom)


def test_llama_logs_reach_python_logging(smollm2_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    native.set_log_level("INFO")
    try:
        with caplog.at_level(logging.INFO, logger="dmr.llama"):
            native.Model.load(smollm2_path)
    finally:
        native.set_log_level("WARNING")
    lines = [r.getMessage() for r in caplog.records if r.name == "dmr.llama"]
    assert any("llama" in line for line in lines), lines[:5]


def test_devices_and_backend() -> None:
    assert os.environ.get("DMR_EXPECT_BACKEND", "cpu") == native.BACKEND
    devs = native.devices()
    assert any(d["type"] == "cpu" for d in devs)
    assert "CPU" in native.system_info() or "AVX" in native.system_info()
