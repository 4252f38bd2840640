"""Fast tier: embeddings and rerank over the in-process app and the FakeEngine (fake_server.py)."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from dmr.engine.fake import EMBED_DIM

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast


async def test_embeddings_float_and_base64_agree_with_the_sdk(fake: FakeServer) -> None:
    r = await fake.client.post("/engines/v1/embeddings", json={"model": MODEL, "input": ["a", "bb"]})
    assert r.status_code == 200, r.text
    doc = r.json()
    vectors = np.array([d["embedding"] for d in doc["data"]], dtype=np.float32)
    assert vectors.shape == (2, EMBED_DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert doc["usage"]["prompt_tokens"] == (1 + 1) + (1 + 2)  # BOS + bytes, per input
    b64 = await fake.client.post(
        "/engines/v1/embeddings", json={"model": MODEL, "input": "a", "encoding_format": "base64"}
    )
    raw = np.frombuffer(base64.b64decode(b64.json()["data"][0]["embedding"]), dtype=np.float32)
    assert np.allclose(raw, vectors[0])
    client = openai.AsyncOpenAI(
        base_url="http://localhost:12434/engines/v1", api_key="x", http_client=fake.client, max_retries=0
    )
    out = await client.embeddings.create(model=MODEL, input=["a"])
    assert np.allclose(out.data[0].embedding, vectors[0], atol=1e-6)


async def test_embedding_bad_inputs_are_400(fake: FakeServer) -> None:
    for body in (
        {"model": MODEL, "input": "a", "encoding_format": "hex"},
        {"model": MODEL, "input": [[999999]]},
        {"model": MODEL, "input": []},
    ):
        r = await fake.client.post("/engines/v1/embeddings", json=body)
        assert r.status_code == 400, (body, r.text)


async def test_rerank_falls_back_to_similarity_and_orders_by_score(fake: FakeServer) -> None:
    docs = ["alpha", "beta", "gamma"]
    body = {"model": MODEL, "query": "alpha", "documents": docs, "top_n": 2, "return_documents": True}
    r = await fake.client.post("/engines/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2
    assert results[0]["index"] == 0 and results[0]["document"] == {"text": "alpha"}  # itself: similarity 1
    assert results[0]["relevance_score"] == pytest.approx(1.0, abs=1e-5)
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    for bad in (
        {"model": MODEL, "query": "", "documents": docs},
        {"model": MODEL, "query": "q", "documents": []},
    ):
        assert (await fake.client.post("/engines/v1/rerank", json=bad)).status_code == 400
