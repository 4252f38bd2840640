// Session: one context, one request at a time: prompt tokens in, a token stream out.
//
// The building block for single-request use from Python and the reference the batching engine is tested
// against. Each call does a bounded amount of work (one prefill, or one decode + one sample) and is meant
// to run with the GIL released; abort() may be called from any other thread at any time.
//
// KV reuse: the tokens in the KV cache are remembered, and the next prompt only evaluates what differs
// from them (a chat's next turn re-evaluates nothing it already saw, the previous answer included).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "context.h"
#include "model.h"
#include "sampling.h"
#include "status.h"
#include "text_stream.h"

namespace dmr {

enum class Finish : int { Running = 0, Stop = 1, Length = 2 };

struct GenerateParams {
    int32_t max_tokens = -1;         // < 0: until the context is full
    std::vector<std::string> stop;   // stop strings (may span tokens; not included in the output)
    bool ignore_eos = false;
};

struct Step {
    llama_token token = -1;   // -1 when the step produced no token (finished before sampling)
    std::string text;         // text safe to show now (may be empty while held back)
    Finish finish = Finish::Running;
};

class Session {
public:
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // `model` must outlive the session.
    static Status create(const Model* model, const ContextParams& params, std::unique_ptr<Session>* out);

    // Evaluates the prompt (reusing the cached prefix) and prepares sampling.
    Status start(const std::vector<llama_token>& prompt, const SamplingParams& sampling, const GenerateParams& gen);
    // Decodes the previously sampled token (if any), then samples the next one.
    Status next(Step* step);
    // Thread-safe: the running or next llama_decode returns Aborted.
    void abort() { abort_.store(true, std::memory_order_relaxed); }
    // Forget the KV cache content.
    void reset();

    uint32_t n_ctx() const { return n_ctx_; }
    int32_t n_prompt() const { return n_prompt_; }
    int32_t n_cached() const { return n_cached_; }       // prompt tokens reused from the KV cache
    int32_t n_generated() const { return n_generated_; }
    const std::vector<llama_token>& kv_tokens() const { return kv_tokens_; }
    llama_context* ctx() const { return ctx_.get(); }

private:
    Session() = default;
    Status decode_tokens(const llama_token* tokens, int32_t n, int32_t pos0, bool logits_last);

    const Model* model_ = nullptr;
    ContextPtr ctx_;
    uint32_t n_ctx_ = 0;
    uint32_t n_batch_ = 0;
    std::atomic<bool> abort_{false};
    std::vector<llama_token> kv_tokens_;   // exactly what the KV cache holds for sequence 0
    Sampler sampler_;
    TextStream stream_;
    GenerateParams gen_;
    llama_token pending_ = -1;             // sampled but not decoded yet
    bool active_ = false;
    Finish finish_ = Finish::Running;
    int32_t n_prompt_ = 0;
    int32_t n_cached_ = 0;
    int32_t n_generated_ = 0;
    llama_batch batch_{};                  // reused for every decode (n_batch tokens)
    bool batch_allocated_ = false;
};

}  // namespace dmr
