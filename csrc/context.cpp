#include "context.h"

#include "log_sink.h"

namespace dmr {
namespace {

bool abort_cb(void* data) { return static_cast<std::atomic<bool>*>(data)->load(std::memory_order_relaxed); }

}  // namespace

Status make_context(const Model& model, const ContextParams& p, std::atomic<bool>* abort_flag, ContextPtr* out) {
    if (p.n_threads < 1 || p.n_threads_batch < 1) return Status::Error(Code::InvalidInput, "n_threads must be >= 1");
    if (p.n_batch < 1 || p.n_ubatch < 1) return Status::Error(Code::InvalidInput, "n_batch and n_ubatch must be >= 1");
    if (p.n_seq_max < 1 || p.n_seq_max > llama_max_parallel_sequences()) {
        return Status::Error(Code::InvalidInput, "n_seq_max must be between 1 and " +
                                                     std::to_string(llama_max_parallel_sequences()));
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = p.n_ctx;
    cp.n_batch = p.n_batch;
    cp.n_ubatch = p.n_ubatch > p.n_batch ? p.n_batch : p.n_ubatch;
    cp.n_seq_max = p.n_seq_max;
    cp.n_threads = p.n_threads;
    cp.n_threads_batch = p.n_threads_batch;
    cp.flash_attn_type = static_cast<llama_flash_attn_type>(p.flash_attn);
    cp.embeddings = p.embeddings;
    cp.pooling_type = static_cast<enum llama_pooling_type>(p.pooling);
    cp.kv_unified = p.kv_unified;
    cp.no_perf = true;
    if (abort_flag) {
        cp.abort_callback = abort_cb;
        cp.abort_callback_data = abort_flag;
    }
    log_capture_begin();
    llama_context* ctx = llama_init_from_model(model.get(), cp);
    if (!ctx) {
        std::string log = log_capture_text();
        std::string first = log.substr(0, log.find('\n'));
        if (log.find("alloc") != std::string::npos || log.find("memory") != std::string::npos) {
            return Status::Error(Code::OutOfMemory, "not enough memory for a context of " + std::to_string(p.n_ctx) +
                                                        " tokens: " + first);
        }
        return Status::Error(Code::Fatal, "cannot create a llama.cpp context: " + first);
    }
    out->reset(ctx);
    return Status::Ok();
}

Status decode_status(int32_t rc, const char* what) {
    switch (rc) {
        case 0: return Status::Ok();
        case 1: return Status::Error(Code::ContextFull, std::string(what) + ": no room left in the KV cache");
        case 2: return Status::Error(Code::Aborted, std::string(what) + " was aborted");
        case -2: return Status::Error(Code::OutOfMemory, std::string(what) + ": failed to allocate compute buffers");
        default: return Status::Error(Code::Fatal, std::string(what) + " failed (llama.cpp code " + std::to_string(rc) + ")");
    }
}

}  // namespace dmr
