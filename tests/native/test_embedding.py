from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dmr import _native as native
from dmr import errors


@pytest.fixture(scope="module")
def embedder(model: Any, test_threads: int) -> Any:
    return native.Embedder.create(model, n_ctx=512, n_threads=test_threads)


def test_unit_norm_and_shape(embedder: Any) -> None:
    out = embedder.embed(["The cat sat on the mat.", "Quantum chromodynamics", "x"])
    assert out.dtype == np.float32 and out.shape == (3, embedder.dim) and embedder.dim == 576
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4)


def test_paraphrase_is_closer_than_unrelated(embedder: Any) -> None:
    pairs = [
        ("The weather is lovely today.", "It is a beautiful sunny day.", "The invoice is due next Monday."),
        (
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "Penguins live in Antarctica.",
        ),
        (
            "The stock market fell sharply.",
            "Share prices dropped a lot.",
            "She plays the violin beautifully.",
        ),
    ]
    for anchor, para, other in pairs:
        e = embedder.embed([anchor, para, other])
        assert float(e[0] @ e[1]) > float(e[0] @ e[2]), (anchor, para, other)


def test_batch_matches_single(embedder: Any) -> None:
    # Inputs share one KV stream and ubatch when packed, so rounding differs a little from one-by-one
    # (measured: cosine >= 0.9997 over 40 inputs); anything near the helper's 0.80 would mean leakage.
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(40)]  # more than n_seq_max
    texts += ["short", "a somewhat longer sentence with more words in it", "x " * 100]
    batched = embedder.embed(texts)
    singles = np.vstack([embedder.embed([t]) for t in texts])
    cosine = (batched * singles).sum(axis=1)
    assert cosine.min() > 0.999, cosine.min()


def test_bad_inputs(embedder: Any) -> None:
    with pytest.raises(errors.ContextFullError):
        embedder.embed([" ".join(["word"] * 2000)])
    with pytest.raises(errors.InvalidRequestError):
        embedder.embed([[]])
    with pytest.raises(errors.InvalidRequestError, match="reranker"):
        embedder.rerank("q", ["d"])


def test_reranker_scores_with_its_head_over_the_rerank_template(
    reranker_path: Path, test_threads: int
) -> None:
    """Rank pooling (a Qwen3-Reranker-shaped model, tests/reranker_model.py): each pair is laid out with the
    GGUF's "rerank" template, as llama-server does, and scored by the classification head."""
    from reranker_model import expected_scores

    model = native.Model.load(str(reranker_path))
    ranker = native.Embedder.create(model, n_ctx=512, n_threads=test_threads)
    assert ranker.is_rank and ranker.dim == 2
    query, docs = "capital of France", ["Paris is the capital of France.", "Bananas are yellow.", "x"]
    filled = model.named_chat_template("rerank").replace("{query}", query).replace("{document}", docs[0])
    assert ranker.rerank_tokens(query, docs[0]) == model.tokenize(
        filled, add_special=False, parse_special=True
    )
    scores = ranker.rerank(query, docs)
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    assert list(scores) == pytest.approx(expected_scores(reranker_path, query, docs, test_threads), abs=2e-3)
