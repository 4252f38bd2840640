// SamplingParams -> llama_sampler chain. Every sampler is llama.cpp's own; this only picks and orders them
// the way llama.cpp's common/sampling.cpp does, so results match llama-server for the same settings.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llama.h"
#include "status.h"

namespace dmr {

struct SamplingParams {
    float temperature = 0.8f;      // <= 0: greedy
    int32_t top_k = 40;            // <= 0: off
    float top_p = 0.95f;           // >= 1: off
    float min_p = 0.05f;           // <= 0: off
    float repeat_penalty = 1.0f;   // 1: off
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    int32_t penalty_last_n = 64;
    uint32_t seed = 0xFFFFFFFFu;   // LLAMA_DEFAULT_SEED: random
    std::vector<std::pair<llama_token, float>> logit_bias;
    std::string grammar;           // GBNF; empty: unconstrained
    std::string grammar_root = "root";
    // Regex patterns that make the grammar lazy: the output is free until one matches, and the grammar then
    // constrains it from the match on (tool calls a model may or may not make). Empty: from the start.
    std::vector<std::string> grammar_triggers;
    // Log-probabilities of each sampled token (OpenAI's logprobs): -1 off; 0 the token's own; N also the
    // N most likely tokens' (at most kMaxTopLogprobs).
    int32_t n_probs = -1;
};

inline constexpr int32_t kMaxTopLogprobs = 20;

// A sampled token's log-probability under the model's raw distribution (the logits before any sampler, as
// llama-server reports them), and the most likely tokens' log-probabilities.
struct TokenProbs {
    float logprob = 0.0f;
    std::vector<std::pair<llama_token, float>> top;
};

// The longest grammar text accepted (bytes). llama.cpp parses and walks a grammar on the decode thread,
// shared by every request on the model: the ceiling bounds what one request can make the others wait for.
inline constexpr size_t kMaxGrammarBytes = 256 * 1024;
// The most `|` a grammar may have: each alternative that is live at a step is a stack llama.cpp matches
// every candidate token against (JSON-schema enums are capped below this, dmr/server/grammar.py). With
// 1536 a bystander's longest gap between tokens stays near half a second (bench/bench_grammar.py).
inline constexpr size_t kMaxGrammarAlternatives = 1536;

// Owning handle for a sampler chain.
struct SamplerDeleter {
    void operator()(llama_sampler* s) const { llama_sampler_free(s); }
};
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

// A request's sampling: llama.cpp's chain (bias, penalties, truncation, the pick) and its grammar, kept
// apart so that the grammar is asked about the chain's pick first (sample_token). `greedy_only`: the chain
// is a bare argmax (no grammar, penalties or bias), so sample_token can skip building a candidate array of
// the whole vocabulary on every call.
struct Sampler {
    SamplerPtr chain;
    SamplerPtr grammar;  // null: unconstrained
    bool lazy_grammar = false;  // the grammar waits for a trigger (grammar_triggers)
    bool greedy_only = false;
    int32_t n_probs = -1;  // SamplingParams::n_probs
};

Status build_sampler(const llama_vocab* vocab, const SamplingParams& params, Sampler* out);

// Samples the token for output row `idx` of the last decode into `out` and advances the sampler's state.
// Fails (InvalidInput) when the grammar allows no token here or cannot take the one chosen: the caller ends
// that request, never the process.
Status sample_token(Sampler& sampler, llama_context* ctx, int32_t idx, int32_t n_vocab, llama_token* out);

// sample_token, except that when the grammar refuses the chain's pick, so that it must be walked over the
// whole vocabulary (up to 2 s for a costly grammar), the row's logits are copied into `walk`, *deferred is
// set and nothing is sampled yet: sample_walk finishes it, on any thread, and the decode step every request
// on the model shares does not wait for it.
Status sample_or_defer(Sampler& sampler, llama_context* ctx, int32_t idx, int32_t n_vocab, llama_token* out,
                       std::vector<float>* walk, bool* deferred);
Status sample_walk(Sampler& sampler, const std::vector<float>& logits, llama_token* out);

// The log-probabilities of `token` and the `n_top` most likely tokens at output row `idx` (computed from the
// row's logits at sampling time: no extra pass over the model).
void token_probs(llama_context* ctx, int32_t idx, int32_t n_vocab, llama_token token, int32_t n_top, TokenProbs* out);

}  // namespace dmr
