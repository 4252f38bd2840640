// Creating a llama_context with dmr's defaults and an abort flag that any thread may set.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "llama.h"
#include "model.h"
#include "status.h"

namespace dmr {

struct ContextParams {
    uint32_t n_ctx = 4096;         // 0: the model's training context
    uint32_t n_batch = 2048;
    uint32_t n_ubatch = 512;
    uint32_t n_seq_max = 1;
    int32_t n_threads = 4;
    int32_t n_threads_batch = 4;
    int32_t flash_attn = -1;       // -1 auto, 0 off, 1 on (llama_flash_attn_type)
    bool embeddings = false;
    int32_t pooling = -1;          // llama_pooling_type; -1: the model's
    bool kv_unified = false;       // one KV pool for all sequences (prefix cells shared by seq_cp)
};

struct ContextDeleter {
    void operator()(llama_context* c) const { llama_free(c); }
};
using ContextPtr = std::unique_ptr<llama_context, ContextDeleter>;

// `abort_flag`, when given, must outlive the context: llama_decode stops between graph nodes once it is set.
Status make_context(const Model& model, const ContextParams& params, std::atomic<bool>* abort_flag, ContextPtr* out);

// Maps a llama_decode/llama_encode return code to a Status (0 -> Ok).
Status decode_status(int32_t rc, const char* what);

// Appends one token of one sequence to a batch made by llama_batch_init (which must have room for it).
inline void batch_push(llama_batch& b, llama_token t, llama_pos pos, llama_seq_id seq, bool logits) {
    const int32_t i = b.n_tokens++;
    b.token[i] = t;
    b.pos[i] = pos;
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = seq;
    b.logits[i] = logits;
}

}  // namespace dmr
