#include "sampling.h"

#include <cmath>

namespace dmr {

llama_token sample_token(llama_sampler* chain, bool greedy_only, llama_context* ctx, int32_t idx, int32_t n_vocab) {
    if (!greedy_only) return llama_sampler_sample(chain, ctx, idx);
    const float* logits = llama_get_logits_ith(ctx, idx);
    int32_t best = 0;
    float best_logit = logits[0];
    for (int32_t t = 1; t < n_vocab; ++t) {
        if (logits[t] > best_logit) {  // first maximum wins, as llama.cpp's greedy sampler
            best_logit = logits[t];
            best = t;
        }
    }
    return best;
}

Status build_sampler(const llama_vocab* vocab, const SamplingParams& p, SamplerPtr* out, bool* greedy_only) {
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    if (!std::isfinite(p.temperature) || !std::isfinite(p.top_p) || !std::isfinite(p.min_p) ||
        !std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty)) {
        return Status::Error(Code::InvalidInput, "sampling parameters must be finite numbers");
    }
    if (p.repeat_penalty <= 0.0f || !std::isfinite(p.repeat_penalty)) {
        return Status::Error(Code::InvalidInput, "repeat_penalty must be > 0");
    }
    llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = true;
    SamplerPtr chain(llama_sampler_chain_init(cp));

    if (!p.logit_bias.empty()) {
        std::vector<llama_logit_bias> bias;
        bias.reserve(p.logit_bias.size());
        for (const auto& [token, value] : p.logit_bias) {
            if (token < 0 || token >= n_vocab) {
                return Status::Error(Code::InvalidInput, "logit_bias token " + std::to_string(token) +
                                                             " is outside the vocabulary");
            }
            bias.push_back({token, value});
        }
        llama_sampler_chain_add(chain.get(),
                                llama_sampler_init_logit_bias(n_vocab, static_cast<int32_t>(bias.size()), bias.data()));
    }
    if (!p.grammar.empty()) {
        // Applied before truncation so that the allowed tokens are never cut away by top-k/top-p.
        llama_sampler* g = nullptr;
        if (p.grammar_triggers.empty()) {
            g = llama_sampler_init_grammar(vocab, p.grammar.c_str(), p.grammar_root.c_str());
        } else {
            std::vector<const char*> patterns;
            for (const auto& t : p.grammar_triggers) patterns.push_back(t.c_str());
            g = llama_sampler_init_grammar_lazy_patterns(vocab, p.grammar.c_str(), p.grammar_root.c_str(),
                                                         patterns.data(), patterns.size(), nullptr, 0);
        }
        if (!g) return Status::Error(Code::InvalidInput, "the grammar does not parse (GBNF expected)");
        llama_sampler_chain_add(chain.get(), g);
    }
    if (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
        llama_sampler_chain_add(chain.get(),
                                llama_sampler_init_penalties(n_vocab, p.penalty_last_n, p.repeat_penalty,
                                                             p.frequency_penalty, p.presence_penalty));
    }
    *greedy_only = p.temperature <= 0.0f && llama_sampler_chain_n(chain.get()) == 0;
    if (p.temperature <= 0.0f) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
    } else {
        if (p.top_k > 0) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_k(p.top_k));
        if (p.top_p < 1.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_p(p.top_p, 1));
        if (p.min_p > 0.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_min_p(p.min_p, 1));
        llama_sampler_chain_add(chain.get(), llama_sampler_init_temp(p.temperature));
        llama_sampler_chain_add(chain.get(), llama_sampler_init_dist(p.seed));
    }
    *out = std::move(chain);
    return Status::Ok();
}

}  // namespace dmr
