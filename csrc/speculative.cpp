#include "speculative.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace dmr {

Status NgramDrafter::draft(int32_t /*slot*/, const std::vector<llama_token>& h, int32_t n_max,
                           std::vector<llama_token>* out) {
    out->clear();
    const int64_t n = static_cast<int64_t>(h.size());
    for (int32_t len = max_; len >= min_; --len) {
        if (n <= len) continue;
        const llama_token* suffix = h.data() + n - len;
        // latest earlier occurrence (search backwards, excluding the suffix itself)
        for (int64_t start = n - len - 1; start >= 0; --start) {
            if (h[start] != suffix[0] || !std::equal(suffix, suffix + len, h.begin() + start)) continue;
            const int64_t from = start + len;
            const int64_t to = std::min<int64_t>(n, from + n_max);
            out->assign(h.begin() + from, h.begin() + to);
            if (!out->empty()) return Status::Ok();
        }
    }
    return Status::Ok();
}

Status check_vocab_compatible(const Model& target, const Model& draft) {
    const llama_vocab* tv = target.vocab();
    const llama_vocab* dv = draft.vocab();
    const int32_t nt = llama_vocab_n_tokens(tv);
    const int32_t nd = llama_vocab_n_tokens(dv);
    if (std::abs(nt - nd) > 128) {
        return Status::Error(Code::InvalidInput, "draft model vocabulary (" + std::to_string(nd) +
                                                     " tokens) does not match the target's (" + std::to_string(nt) + ")");
    }
    if (llama_vocab_bos(tv) != llama_vocab_bos(dv) || llama_vocab_eos(tv) != llama_vocab_eos(dv)) {
        return Status::Error(Code::InvalidInput, "draft and target models use different BOS/EOS tokens");
    }
    const int32_t n = std::min(nt, nd);
    for (int32_t t = 0; t < n; t += std::max(1, n / 512)) {
        if (target.token_to_piece(t, true) != draft.token_to_piece(t, true)) {
            return Status::Error(Code::InvalidInput, "draft and target vocabularies differ at token " + std::to_string(t));
        }
    }
    return Status::Ok();
}

Status ModelDrafter::create(const Model* target, const Model* draft, const ContextParams& params, int32_t n_slots,
                            std::unique_ptr<Drafter>* out) {
    Status st = check_vocab_compatible(*target, *draft);
    if (!st.ok()) return st;
    std::unique_ptr<ModelDrafter> d(new ModelDrafter());
    d->draft_ = draft;
    ContextParams p = params;
    p.n_seq_max = static_cast<uint32_t>(n_slots);
    st = make_context(*draft, p, nullptr, &d->ctx_);
    if (!st.ok()) return st;
    d->n_batch_ = llama_n_batch(d->ctx_.get());
    d->n_ctx_ = llama_n_ctx_seq(d->ctx_.get());
    d->cached_.resize(static_cast<size_t>(n_slots));
    d->batch_ = llama_batch_init(static_cast<int32_t>(d->n_batch_), 0, 1);
    d->batch_allocated_ = true;
    *out = std::move(d);
    return Status::Ok();
}

ModelDrafter::~ModelDrafter() {
    if (batch_allocated_) llama_batch_free(batch_);
}

void ModelDrafter::forget(int32_t slot) {
    llama_memory_seq_rm(llama_get_memory(ctx_.get()), slot, -1, -1);
    cached_[static_cast<size_t>(slot)].clear();
}

Status ModelDrafter::decode(int32_t slot, const llama_token* tokens, int32_t n, bool logits_last) {
    auto& cache = cached_[static_cast<size_t>(slot)];
    for (int32_t i = 0; i < n; i += static_cast<int32_t>(n_batch_)) {
        const int32_t len = std::min<int32_t>(static_cast<int32_t>(n_batch_), n - i);
        batch_.n_tokens = 0;
        for (int32_t j = 0; j < len; ++j) {
            batch_push(batch_, tokens[i + j], static_cast<llama_pos>(cache.size() + static_cast<size_t>(j)), slot,
                       logits_last && i + j == n - 1);
        }
        Status st = decode_status(llama_decode(ctx_.get(), batch_), "draft llama_decode");
        if (!st.ok()) {
            forget(slot);
            return st;
        }
        cache.insert(cache.end(), tokens + i, tokens + i + len);
    }
    return Status::Ok();
}

double ModelDrafter::measure_token_seconds(int32_t slot, const std::vector<llama_token>& context) {
    forget(slot);
    double best = -1.0;
    if (!decode(slot, context.data(), static_cast<int32_t>(context.size()), true).ok()) return -1.0;
    const llama_token t = context.back();
    for (int i = 0; i < 4; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        if (!decode(slot, &t, 1, true).ok()) break;
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = i == 0 ? dt : std::min(best, dt);
    }
    forget(slot);
    return best;
}

Status ModelDrafter::draft(int32_t slot, const std::vector<llama_token>& h, int32_t n_max,
                           std::vector<llama_token>* out) {
    out->clear();
    catchup_seconds_ = 0.0;
    if (h.empty() || h.size() + static_cast<size_t>(n_max) + 1 >= n_ctx_) return Status::Ok();
    auto& cache = cached_[static_cast<size_t>(slot)];
    size_t keep = 0;
    while (keep < cache.size() && keep < h.size() && cache[keep] == h[keep]) ++keep;
    if (keep == h.size()) --keep;  // the last token is evaluated again for its logits
    if (keep < cache.size()) {
        if (!llama_memory_seq_rm(llama_get_memory(ctx_.get()), slot, static_cast<llama_pos>(keep), -1)) {
            forget(slot);
            keep = 0;
        }
        cache.resize(keep);
    }
    // In steady state the gap is the last step's accepted tokens plus one; more means drafting was paused.
    const size_t gap = h.size() - keep;
    const auto t0 = std::chrono::steady_clock::now();
    Status st = decode(slot, h.data() + keep, static_cast<int32_t>(gap), true);
    if (!st.ok()) return st;
    catchup_seconds_ = gap > static_cast<size_t>(n_max) + 1
                           ? std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                           : 0.0;
    const llama_vocab* vocab = draft_->vocab();
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    for (int32_t i = 0; i < n_max; ++i) {
        const float* logits = llama_get_logits_ith(ctx_.get(), -1);
        llama_token best = 0;
        for (llama_token t = 1; t < n_vocab; ++t) {
            if (logits[t] > logits[best]) best = t;
        }
        if (llama_vocab_is_eog(vocab, best)) break;
        out->push_back(best);
        if (i + 1 == n_max) break;
        st = decode(slot, &best, 1, true);
        if (!st.ok()) return st;
    }
    return Status::Ok();
}

}  // namespace dmr
