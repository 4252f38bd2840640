# Embedder: pooled, L2-normalised embeddings (and rank scores) written straight into numpy arrays.
import numpy as _np

from includes.dmr_core cimport CEmbedder


cdef class Embedder:
    """Embeddings for batches of inputs. Not thread-safe."""

    cdef unique_ptr[CEmbedder] c_embedder
    cdef readonly Model model

    def __init__(self):
        raise TypeError("use Embedder.create(model, ...)")

    @staticmethod
    def create(Model model, *, n_ctx=2048, int n_seq_max=32, n_threads=None, n_threads_batch=None,
               pooling=None):
        """n_ctx: the longest input in tokens (also the most tokens computed in one call).
        pooling: None for the model's own (mean for models that declare none), or a llama_pooling_type."""
        cdef Embedder self = Embedder.__new__(Embedder)
        cdef ContextParams params = _context_params(n_ctx, n_ctx, n_ctx, n_threads, n_threads_batch, None,
                                                    n_seq_max)
        params.pooling = -1 if pooling is None else pooling
        cdef CStatus st
        cdef CModel* m = model.ptr()
        with nogil:
            st = CEmbedder.create(m, params, &self.c_embedder)
        check_status(st)
        _forward_logs()
        self.model = model
        return self

    cdef CEmbedder* ptr(self) except NULL:
        if not self.c_embedder:
            raise ValueError("embedder is closed")
        return self.c_embedder.get()

    @property
    def dim(self):
        return self.ptr().dim()

    @property
    def is_rank(self):
        return bool(self.ptr().is_rank())

    def _tokens(self, item):
        if isinstance(item, str):
            return self.model.tokenize(item, add_special=True, parse_special=False)
        return list(item)

    def embed(self, inputs, *, bint normalize=True):
        """inputs: a list of str or of token-id lists. Returns float32 array (len(inputs), dim);
        rows are unit vectors when normalize (ignored for rank pooling)."""
        if isinstance(inputs, str):
            inputs = [inputs]
        cdef vector[vector[llama_token]] c_inputs = [self._tokens(x) for x in inputs]
        cdef CEmbedder* e = self.ptr()
        out = _np.empty((c_inputs.size(), e.dim()), dtype=_np.float32)
        if c_inputs.size() == 0:
            return out
        cdef float[:, ::1] view = out
        cdef CStatus st
        with nogil:
            st = e.embed(c_inputs, normalize, &view[0, 0])
        check_status(st)
        return out

    def rerank(self, str query, documents):
        """Relevance score of each document for the query (models with rank pooling)."""
        if not self.ptr().is_rank():
            raise _errors.InvalidRequestError("this model is not a reranker (its pooling is not 'rank')")
        return self.embed([self.rerank_tokens(query, doc) for doc in documents], normalize=False)[:, 0]

    def rerank_tokens(self, str query, str document):
        """One (query, document) pair laid out as llama-server's format_prompt_rerank does: the GGUF's
        "rerank" template with {query} and {document} filled in (Qwen3-Reranker), else
        [BOS] query [EOS] [SEP] document [EOS], each special token where the vocabulary asks for it."""
        template = self.model.named_chat_template("rerank")
        if template is not None:
            text = template.replace("{query}", query).replace("{document}", document)
            return self.model.tokenize(text, add_special=False, parse_special=True)
        tok = self.model.special_tokens
        eos = tok["eos"] if tok["eos"] >= 0 else tok["sep"]
        seq = [tok["bos"]] if tok["add_bos"] else []
        seq += self.model.tokenize(query, add_special=False)
        seq += [eos] if tok["add_eos"] else []
        seq += [tok["sep"]] if tok["add_sep"] else []
        seq += self.model.tokenize(document, add_special=False)
        seq += [eos] if tok["add_eos"] else []
        return seq

    def abort(self):
        self.ptr().abort()
