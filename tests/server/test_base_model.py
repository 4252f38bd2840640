"""A GGUF without a chat template (Gemma 3 270M base) through a real server: the ChatML fallback (llama.cpp's
choice) ends an answer at its end-of-turn marker instead of running on with turns of its own until
max_tokens (issue #18, 9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Server, make_store, running_server

GEMMA = "ai/gemma3-base:latest"


@pytest.fixture(scope="module")
def gemma_server(tmp_path_factory: pytest.TempPathFactory, gemma_path: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("gemma")
    make_store(root / "store", {GEMMA: gemma_path})
    with running_server(root / "srv", root / "store", env={"DMR_CONTEXT_SIZE": "1024"}) as srv:
        yield srv


def test_a_base_model_stops_at_the_end_of_its_turn(gemma_server: Server) -> None:
    body = {
        "model": GEMMA,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        "max_tokens": 200,
        "temperature": 0,
    }
    with gemma_server.client() as c:
        r = c.post("/engines/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    content = doc["choices"][0]["message"]["content"]
    assert doc["choices"][0]["finish_reason"] == "stop", content
    assert doc["usage"]["completion_tokens"] < 200
    for marker in ("<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<|im_end|>"):
        assert marker not in content, content
