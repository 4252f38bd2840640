#include "session.h"

#include <algorithm>

namespace dmr {

Status Session::create(const Model* model, const ContextParams& params, std::unique_ptr<Session>* out) {
    std::unique_ptr<Session> s(new Session());
    s->model_ = model;
    Status st = make_context(*model, params, &s->abort_, &s->ctx_);
    if (!st.ok()) return st;
    s->n_ctx_ = llama_n_ctx(s->ctx_.get());
    s->n_batch_ = llama_n_batch(s->ctx_.get());
    s->batch_ = llama_batch_init(static_cast<int32_t>(s->n_batch_), 0, 1);
    s->batch_allocated_ = true;
    *out = std::move(s);
    return Status::Ok();
}

Session::~Session() {
    if (batch_allocated_) llama_batch_free(batch_);
}

void Session::reset() {
    llama_memory_clear(llama_get_memory(ctx_.get()), true);
    kv_tokens_.clear();
    pending_ = -1;
    active_ = false;
}

Status Session::decode_tokens(const llama_token* tokens, int32_t n, int32_t pos0, bool logits_last) {
    for (int32_t i = 0; i < n; i += static_cast<int32_t>(n_batch_)) {
        const int32_t len = std::min<int32_t>(static_cast<int32_t>(n_batch_), n - i);
        batch_.n_tokens = 0;
        for (int32_t j = 0; j < len; ++j) batch_push(batch_, tokens[i + j], pos0 + i + j, 0, logits_last && i + j == n - 1);
        int32_t rc = llama_decode(ctx_.get(), batch_);
        Status st = decode_status(rc, "llama_decode");
        if (!st.ok()) {
            // The cache may hold part of this chunk: forget it all rather than guess.
            reset();
            return st;
        }
        kv_tokens_.insert(kv_tokens_.end(), tokens + i, tokens + i + len);
    }
    return Status::Ok();
}

Status Session::start(const std::vector<llama_token>& prompt, const SamplingParams& sampling,
                      const GenerateParams& gen) {
    abort_.store(false, std::memory_order_relaxed);
    active_ = false;
    pending_ = -1;
    if (prompt.empty()) return Status::Error(Code::InvalidInput, "the prompt is empty");
    for (llama_token t : prompt) {
        if (!model_->valid_token(t)) {
            return Status::Error(Code::InvalidInput, "prompt token " + std::to_string(t) + " is outside the vocabulary");
        }
    }
    if (prompt.size() >= n_ctx_) {
        return Status::Error(Code::ContextFull, "the prompt has " + std::to_string(prompt.size()) +
                                                    " tokens but the context holds " + std::to_string(n_ctx_) +
                                                    " (at least one must be left to generate)");
    }
    Status st = build_sampler(model_->vocab(), sampling, &sampler_);
    if (!st.ok()) return st;

    // Longest common prefix with what the cache holds; at least the last prompt token is evaluated again
    // because its logits are needed for the first sample.
    size_t keep = 0;
    while (keep < kv_tokens_.size() && keep < prompt.size() && kv_tokens_[keep] == prompt[keep]) ++keep;
    if (keep == prompt.size()) --keep;
    llama_memory_t mem = llama_get_memory(ctx_.get());
    if (keep < kv_tokens_.size()) {
        if (!llama_memory_seq_rm(mem, 0, static_cast<llama_pos>(keep), -1)) {
            // some memories (recurrent, SWA) cannot drop a suffix: start over
            llama_memory_clear(mem, true);
            keep = 0;
        }
        kv_tokens_.resize(keep);
    }
    n_prompt_ = static_cast<int32_t>(prompt.size());
    n_cached_ = static_cast<int32_t>(keep);
    n_generated_ = 0;
    st = decode_tokens(prompt.data() + keep, static_cast<int32_t>(prompt.size() - keep), static_cast<int32_t>(keep), true);
    if (!st.ok()) return st;

    stream_ = TextStream(gen.stop);
    gen_ = gen;
    finish_ = Finish::Running;
    active_ = true;
    return Status::Ok();
}

Status Session::next(Step* step) {
    step->token = -1;
    step->text.clear();
    step->finish = finish_;
    if (!active_) {
        if (finish_ != Finish::Running) return Status::Ok();
        return Status::Error(Code::InvalidInput, "no generation in progress: call start() first");
    }
    if (abort_.load(std::memory_order_relaxed)) {
        active_ = false;
        return Status::Error(Code::Aborted, "generation was aborted");
    }
    if (pending_ >= 0) {
        const llama_token t = pending_;
        pending_ = -1;
        Status st = decode_tokens(&t, 1, static_cast<int32_t>(kv_tokens_.size()), true);
        if (!st.ok()) {
            active_ = false;
            return st;
        }
    }
    llama_token token = -1;
    Status sampled = sample_token(sampler_, ctx_.get(), -1, model_->n_vocab(), &token);
    if (!sampled.ok()) {
        active_ = false;
        return sampled;
    }
    ++n_generated_;
    step->token = token;
    if (!gen_.ignore_eos && llama_vocab_is_eog(model_->vocab(), token)) {
        finish_ = Finish::Stop;
        step->text = stream_.finish();
    } else {
        step->text = stream_.push(model_->token_to_piece(token, false));
        if (stream_.stopped()) {
            finish_ = Finish::Stop;
        } else if ((gen_.max_tokens >= 0 && n_generated_ >= gen_.max_tokens) || kv_tokens_.size() + 1 >= n_ctx_) {
            finish_ = Finish::Length;
            step->text += stream_.finish();
        } else {
            pending_ = token;
        }
    }
    if (finish_ != Finish::Running) active_ = false;
    step->finish = finish_;
    return Status::Ok();
}

}  // namespace dmr
