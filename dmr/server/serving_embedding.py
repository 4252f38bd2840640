"""POST embeddings and POST rerank / score.

Rerank follows llama.cpp's /rerank wire format (`{"model","query","documents","top_n"}` ->
`{"results":[{"index","relevance_score"}],"usage"}`, results sorted best first). A reranker model (its
GGUF declares rank pooling: BGE/Jina rerankers, Qwen3-Reranker) scores each (query, document) pair with
its own classification head, laid out as llama-server lays it out (the GGUF's "rerank" template, else
[BOS] query [EOS] [SEP] document [EOS]); the score is the head's first output, as llama-server returns
it. Any other model still answers: relevance is then the cosine similarity of the query's and each
document's normalised embedding, mapped to [0, 1] as (1 + cos) / 2. llama-server refuses such models
(`--reranking` needs a rank head); ordering by embedding similarity is what a user of a chat or
embedding model on DMR would rather get than an error.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dmr.engine.protocol import Engine
from dmr.errors import InvalidRequestError
from dmr.server.protocol import EmbeddingRequest, RerankRequest, decode, text_inputs
from dmr.server.serving import Exchange, guarded, hold_model, until_disconnect
from dmr.server.state import ServerState

MAX_INPUTS = 2048


def inputs_of(value: Any) -> list[str | list[int]]:
    items = text_inputs(value, "input")
    if len(items) > MAX_INPUTS:
        raise InvalidRequestError(f"at most {MAX_INPUTS} inputs per request")
    return items


def _count_tokens(engine: Engine, items: list[str | list[int]]) -> int:
    return sum(len(engine.tokenize(i)) if isinstance(i, str) else len(i) for i in items)


def _check_tokens(engine: Engine, items: list[str | list[int]]) -> None:
    n_vocab = engine.n_vocab
    for item in items:
        if isinstance(item, list) and any(t < 0 or t >= n_vocab for t in item):
            raise InvalidRequestError(f"token ids must be in [0, {n_vocab})")


async def create_embedding(state: ServerState, request: Request, body: bytes) -> Response:
    req: EmbeddingRequest = decode(body, EmbeddingRequest)
    items = inputs_of(req.input)
    if req.encoding_format not in ("float", "base64"):
        raise InvalidRequestError("encoding_format must be 'float' or 'base64'")
    assert req.model is not None
    ex = await hold_model(state, request, body, req.model, "embeddings")
    return await guarded(ex, lambda: _embed(ex, req, items))


async def _embed(ex: Exchange, req: EmbeddingRequest, items: list[str | list[int]]) -> Response:
    engine = ex.runner.engine
    assert engine is not None
    _check_tokens(engine, items)
    vectors = await until_disconnect(ex.request, engine.embed(items))
    if req.dimensions is not None and req.dimensions != vectors.shape[1]:
        raise InvalidRequestError(
            f"this model's embeddings have {vectors.shape[1]} dimensions; "
            f"dimensions={req.dimensions} is not supported"
        )
    n_tokens = _count_tokens(engine, items)
    data = []
    for i, row in enumerate(vectors):
        emb: Any = (
            base64.b64encode(np.ascontiguousarray(row, dtype=np.float32).tobytes()).decode()
            if req.encoding_format == "base64"
            else row.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": emb})
    out = {
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }
    ex.finish(200, {**out, "data": f"<{len(data)} embeddings>"}, None, None)
    return JSONResponse(out)


async def create_rerank(state: ServerState, request: Request, body: bytes) -> Response:
    req: RerankRequest = decode(body, RerankRequest)
    query = req.query if req.query is not None else req.text_1
    docs_raw: Any = req.documents if req.documents is not None else req.text_2
    if isinstance(docs_raw, str):
        docs_raw = [docs_raw]
    if not query:
        raise InvalidRequestError("query must be a non-empty string")
    if not docs_raw:
        raise InvalidRequestError("documents must be a non-empty list")
    docs: list[str] = []
    for d in docs_raw:
        text = d.get("text") if isinstance(d, dict) else d
        if not isinstance(text, str) or not text:
            raise InvalidRequestError("each document must be a non-empty string or {'text': ...}")
        docs.append(text)
    if len(docs) > MAX_INPUTS:
        raise InvalidRequestError(f"at most {MAX_INPUTS} documents per request")
    if req.top_n is not None and req.top_n < 0:
        raise InvalidRequestError("top_n must be >= 0")
    assert req.model is not None
    ex = await hold_model(state, request, body, req.model, "rerank")
    return await guarded(ex, lambda: _rerank(ex, req, query, docs))


async def _rerank(ex: Exchange, req: RerankRequest, query: str, docs: list[str]) -> Response:
    engine = ex.runner.engine
    assert engine is not None
    ranked = await until_disconnect(ex.request, engine.rerank(query, docs))
    if ranked is not None:
        scores, n_tokens = ranked  # the pairs' tokens, as llama-server counts them
    else:  # no rank head: embedding similarity
        vectors = await until_disconnect(ex.request, engine.embed([query, *docs]))
        scores = ((vectors[1:] @ vectors[0]) + 1.0) / 2.0
        n_tokens = _count_tokens(engine, [query, *docs])
    order = sorted(range(len(docs)), key=lambda i: -float(scores[i]))
    if req.top_n is not None:
        order = order[: req.top_n]
    results = []
    for i in order:
        r: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
        if req.return_documents:
            r["document"] = {"text": docs[i]}
        results.append(r)
    out = {
        "model": req.model,
        "object": "list",
        "results": results,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }
    ex.finish(200, out, None, None)
    return JSONResponse(out)
