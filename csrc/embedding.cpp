#include "embedding.h"

#include <cmath>
#include <cstring>
#include <string>

namespace dmr {

Embedder::~Embedder() {
    if (batch_allocated_) llama_batch_free(batch_);
}

Status Embedder::create(const Model* model, ContextParams params, std::unique_ptr<Embedder>* out) {
    std::unique_ptr<Embedder> e(new Embedder());
    e->model_ = model;
    params.embeddings = true;
    // One KV stream for all inputs of a batch (sequences separated by the attention mask). Per-sequence
    // streams would give each input only n_ctx / n_seq_max cells.
    params.kv_unified = true;
    if (params.n_ctx == 0 || params.n_ctx > params.n_batch) params.n_ctx = params.n_batch;
    params.n_batch = params.n_ctx;
    params.n_ubatch = params.n_ctx;
    if (params.pooling < 0) {
        // The model's own pooling if it declares one; mean pooling for causal LMs that declare none.
        char buf[64];
        char arch[64];
        int32_t n_arch = llama_model_meta_val_str(model->get(), "general.architecture", arch, sizeof(arch));
        std::string key = std::string(n_arch > 0 ? arch : "llama") + ".pooling_type";
        params.pooling = llama_model_meta_val_str(model->get(), key.c_str(), buf, sizeof(buf)) > 0
                             ? LLAMA_POOLING_TYPE_UNSPECIFIED
                             : LLAMA_POOLING_TYPE_MEAN;
    }
    Status st = make_context(*model, params, &e->abort_, &e->ctx_);
    if (!st.ok()) return st;
    e->pooling_ = llama_pooling_type(e->ctx_.get());
    if (e->pooling_ == LLAMA_POOLING_TYPE_NONE) {
        return Status::Error(Code::InvalidInput, "this model has no pooling: per-token embeddings are not supported");
    }
    e->dim_ = e->pooling_ == LLAMA_POOLING_TYPE_RANK ? static_cast<int32_t>(std::max<uint32_t>(1, llama_model_n_cls_out(model->get())))
                                                     : llama_model_n_embd_out(model->get());
    e->n_batch_ = llama_n_batch(e->ctx_.get());
    e->n_seq_max_ = llama_n_seq_max(e->ctx_.get());
    e->batch_ = llama_batch_init(static_cast<int32_t>(e->n_batch_), 0, 1);
    e->batch_allocated_ = true;
    *out = std::move(e);
    return Status::Ok();
}

Status Embedder::embed(const std::vector<std::vector<llama_token>>& inputs, bool normalize, float* out) {
    abort_.store(false, std::memory_order_relaxed);
    for (size_t i = 0; i < inputs.size(); ++i) {
        if (inputs[i].empty()) return Status::Error(Code::InvalidInput, "input " + std::to_string(i) + " is empty");
        if (inputs[i].size() > n_batch_) {
            return Status::Error(Code::ContextFull, "input " + std::to_string(i) + " has " +
                                                        std::to_string(inputs[i].size()) +
                                                        " tokens; the embedding context holds " + std::to_string(n_batch_));
        }
        for (llama_token t : inputs[i]) {
            if (!model_->valid_token(t)) {
                return Status::Error(Code::InvalidInput, "token " + std::to_string(t) + " is outside the vocabulary");
            }
        }
    }
    // Greedy packing in input order: as many whole inputs per decode as tokens and sequence ids allow.
    size_t first = 0;
    while (first < inputs.size()) {
        size_t count = 0;
        size_t tokens = 0;
        while (first + count < inputs.size() && count < n_seq_max_ &&
               tokens + inputs[first + count].size() <= n_batch_) {
            tokens += inputs[first + count].size();
            ++count;
        }
        Status st = run_batch(inputs, first, count, normalize, out + first * static_cast<size_t>(dim_));
        if (!st.ok()) return st;
        first += count;
    }
    return Status::Ok();
}

Status Embedder::run_batch(const std::vector<std::vector<llama_token>>& inputs, size_t first, size_t count,
                           bool normalize, float* out) {
    llama_memory_clear(llama_get_memory(ctx_.get()), true);
    batch_.n_tokens = 0;
    for (size_t s = 0; s < count; ++s) {
        const auto& toks = inputs[first + s];
        for (size_t j = 0; j < toks.size(); ++j) {
            batch_push(batch_, toks[j], static_cast<llama_pos>(j), static_cast<llama_seq_id>(s), true);
        }
    }
    const bool encoder_only = llama_model_has_encoder(model_->get()) && !llama_model_has_decoder(model_->get());
    int32_t rc = encoder_only ? llama_encode(ctx_.get(), batch_) : llama_decode(ctx_.get(), batch_);
    Status st = decode_status(rc, encoder_only ? "llama_encode" : "llama_decode");
    if (!st.ok()) return st;
    for (size_t s = 0; s < count; ++s) {
        const float* e = llama_get_embeddings_seq(ctx_.get(), static_cast<llama_seq_id>(s));
        if (!e) return Status::Error(Code::Fatal, "llama.cpp returned no pooled embedding");
        float* row = out + s * static_cast<size_t>(dim_);
        std::memcpy(row, e, sizeof(float) * static_cast<size_t>(dim_));
        if (normalize && !is_rank()) {
            double norm = 0.0;
            for (int32_t k = 0; k < dim_; ++k) norm += static_cast<double>(row[k]) * row[k];
            norm = std::sqrt(norm);
            if (norm > 0.0) {
                const float inv = static_cast<float>(1.0 / norm);
                for (int32_t k = 0; k < dim_; ++k) row[k] *= inv;
            }
        }
    }
    return Status::Ok();
}

}  // namespace dmr
