"""A small Qwen3-Reranker-shaped GGUF for the rerank tests.

No reranker model can be installed here (PyPI carries none, hubs are out of reach), so the tests build
one with the `gguf` package: Qwen3 architecture, rank pooling, a two-way "yes"/"no" classification head
and a "rerank" prompt template, as llama.cpp's converter writes Qwen3-Reranker. It borrows SmolLM2's
tokenizer so real text tokenizes, and its weights are seeded random numbers: its scores mean nothing,
but llama.cpp computes them through the real rank-pooling graph, which is what the tests check against
an independent computation (the last token's hidden state times the head, softmaxed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_EMBD, N_FF, N_LAYER, N_HEAD, N_HEAD_KV, HEAD_DIM = 64, 128, 2, 4, 2, 16
RERANK_TEMPLATE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements of the Query. "
    'Answer only "yes" or "no".<|im_end|>\n<|im_start|>user\n<Query>: {query}\n<Document>: {document}'
    "<|im_end|>\n<|im_start|>assistant\n"
)


def write_reranker(path: Path, tokenizer_from: Path, seed: int = 7) -> Path:
    import gguf

    reader = gguf.GGUFReader(str(tokenizer_from))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.08) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = gguf.GGUFWriter(str(path), "qwen3")
    w.add_name("test-qwen3-reranker")
    w.add_context_length(1024)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_block_count(N_LAYER)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_pooling_type(gguf.PoolingType.RANK)
    w.add_array("qwen3.classifier.output_labels", ["yes", "no"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    # SmolLM2's tokenizer, field by field
    w.add_tokenizer_model(reader.fields["tokenizer.ggml.model"].contents())
    w.add_tokenizer_pre(reader.fields["tokenizer.ggml.pre"].contents())
    w.add_token_list(tokens)
    w.add_token_types(reader.fields["tokenizer.ggml.token_type"].contents())
    w.add_token_merges(reader.fields["tokenizer.ggml.merges"].contents())
    w.add_bos_token_id(reader.fields["tokenizer.ggml.bos_token_id"].contents())
    w.add_eos_token_id(reader.fields["tokenizer.ggml.eos_token_id"].contents())
    w.add_add_bos_token(False)
    w.add_chat_template([{"name": "rerank", "template": RERANK_TEMPLATE}])

    w.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD, scale=0.5))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("cls.output.weight", weight(2, N_EMBD, scale=0.05))
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", weight(N_HEAD * HEAD_DIM, N_EMBD))
        w.add_tensor(f"blk.{i}.attn_k.weight", weight(N_HEAD_KV * HEAD_DIM, N_EMBD))
        w.add_tensor(f"blk.{i}.attn_v.weight", weight(N_HEAD_KV * HEAD_DIM, N_EMBD))
        w.add_tensor(f"blk.{i}.attn_output.weight", weight(N_EMBD, N_HEAD * HEAD_DIM))
        w.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(HEAD_DIM, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(HEAD_DIM, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", weight(N_FF, N_EMBD))
        w.add_tensor(f"blk.{i}.ffn_up.weight", weight(N_FF, N_EMBD))
        w.add_tensor(f"blk.{i}.ffn_down.weight", weight(N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def head_weights(path: Path) -> np.ndarray:
    """The classification head (2 x n_embd) as stored in the GGUF."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    tensor = next(t for t in reader.tensors if t.name == "cls.output.weight")
    return np.asarray(tensor.data, dtype=np.float32).reshape(2, N_EMBD)


def expected_scores(path: Path, query: str, documents: list[str], n_threads: int = 2) -> list[float]:
    """What a Qwen3 reranker's rank pooling must give, computed here from parts: llama.cpp's hidden state of
    the last token of the template-filled pair (LAST pooling, no head), times the head, softmaxed, first
    label. Independent of dmr's rerank path except for the model forward pass itself."""
    from dmr._native import Embedder, Model

    model = Model.load(str(path))
    template = model.named_chat_template("rerank")
    assert template is not None
    last_token = Embedder.create(model, n_ctx=512, n_threads=n_threads, pooling=3)  # LLAMA_POOLING_TYPE_LAST
    head = head_weights(path)
    scores = []
    for doc in documents:
        filled = template.replace("{query}", query).replace("{document}", doc)
        tokens = model.tokenize(filled, add_special=False, parse_special=True)
        logits = head @ last_token.embed([tokens], normalize=False)[0]
        probs = np.exp(logits - logits.max())
        scores.append(float(probs[0] / probs.sum()))
    return scores
