// Embedder: pooled embeddings (or rank scores) for many inputs, packed into as few llama_decode calls as
// the batch allows (one sequence id per input).
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "context.h"
#include "model.h"
#include "status.h"

namespace dmr {

class Embedder {
public:
    ~Embedder();
    Embedder(const Embedder&) = delete;
    Embedder& operator=(const Embedder&) = delete;

    // params.embeddings is forced on. pooling -1 takes the model's pooling, and mean pooling for models
    // that declare none (a chat model used for embeddings). n_ubatch is raised to n_batch: a pooled
    // sequence must be computed in one ubatch.
    static Status create(const Model* model, ContextParams params, std::unique_ptr<Embedder>* out);

    // Width of one output row: n_embd, or the number of classifier outputs for rank pooling.
    int32_t dim() const { return dim_; }
    bool is_rank() const { return pooling_ == LLAMA_POOLING_TYPE_RANK; }
    int32_t pooling() const { return pooling_; }
    uint32_t max_tokens() const { return n_batch_; }

    // Writes inputs.size() rows of dim() floats to `out`; L2-normalises each row when `normalize`.
    Status embed(const std::vector<std::vector<llama_token>>& inputs, bool normalize, float* out);
    void abort() { abort_.store(true, std::memory_order_relaxed); }

private:
    Embedder() = default;
    Status run_batch(const std::vector<std::vector<llama_token>>& inputs, size_t first, size_t count, bool normalize,
                     float* out);

    const Model* model_ = nullptr;
    ContextPtr ctx_;
    std::atomic<bool> abort_{false};
    int32_t dim_ = 0;
    int32_t pooling_ = 0;
    uint32_t n_batch_ = 0;
    uint32_t n_seq_max_ = 1;
    llama_batch batch_{};
    bool batch_allocated_ = false;
};

}  // namespace dmr
