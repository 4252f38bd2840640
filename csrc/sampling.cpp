#include "sampling.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <string>
#include <vector>

namespace dmr {

namespace {

// The candidate array for a row of logits: every token with its logit.
void fill_candidates(const float* logits, int32_t n_vocab, std::vector<llama_token_data>* cur) {
    cur->resize(static_cast<size_t>(n_vocab));
    for (llama_token t = 0; t < n_vocab; ++t) (*cur)[static_cast<size_t>(t)] = llama_token_data{t, logits[t], 0.0f};
}

// The longest one step of a request's grammar may take over the whole vocabulary. llama.cpp walks every
// candidate token through every live parse stack, and a grammar of overlapping optional repetitions (forty
// `[a-z]{0,30}` in a row) keeps hundreds of stacks that each accept almost any word: 111 s for one token
// here, while every other request on the model waits. Whatever text check is made, some grammar stays
// that costly, so the walk itself is bounded: it runs over slices of the vocabulary and gives up, failing
// only this request, once it has run this long. Real grammars stay far below it (a 1,536-way enum, the most
// alternatives allowed, takes about 0.4 s; JSON schemas take milliseconds).
constexpr auto kGrammarStepLimit = std::chrono::milliseconds(2000);
constexpr size_t kGrammarSlice = 2048;  // candidates per slice: the clock is read between slices

Status too_costly() {
    return Status::Error(Code::InvalidInput,
                         "the grammar is too costly to evaluate: one token took more than " +
                             std::to_string(kGrammarStepLimit.count()) +
                             " ms to check (long runs of overlapping optional repetitions, such as many "
                             "[a-z]{0,30} in a row, are ambiguous; make the repetitions distinct or bounded)");
}

// llama_sampler_apply(grammar, cur_p), slice by slice: rejecting a candidate depends on that candidate only,
// so the result is the same as one call over the whole array.
Status apply_grammar_bounded(llama_sampler* grammar, llama_token_data_array* cur_p) {
    const auto start = std::chrono::steady_clock::now();
    for (size_t at = 0; at < cur_p->size; at += kGrammarSlice) {
        llama_token_data_array slice = {cur_p->data + at, std::min(kGrammarSlice, cur_p->size - at), -1, false};
        llama_sampler_apply(grammar, &slice);
        if (std::chrono::steady_clock::now() - start > kGrammarStepLimit) return too_costly();
    }
    return Status::Ok();
}

Status dead_end() {
    return Status::Error(Code::InvalidInput,
                         "the grammar allows no token at this point: nothing can be generated that matches it");
}

// The grammar and the chain are told the token picked (llama_sampler_accept throws on one the grammar
// cannot take: the caller turns that into a Status).
void accept(Sampler& s, llama_token token) {
    if (s.grammar) {
        try {
            llama_sampler_accept(s.grammar.get(), token);
        } catch (const std::exception&) {
            if (!s.lazy_grammar) throw;
            // A lazy grammar takes the text from its trigger on when a token completes the trigger, and
            // that token may already carry what the grammar refuses (SmolLM2 writes `<tool_call>` in
            // pieces, the last one `></`: an empty call). The model's text stands; the grammar, an aid
            // to a call it was not given the chance to constrain, is dropped for the rest of the request.
            s.grammar.reset();
        }
    }
    llama_sampler_accept(s.chain.get(), token);
}

Status grammar_error(const std::exception& e) {
    return Status::Error(Code::InvalidInput, std::string("the grammar cannot continue: ") + e.what());
}

// The grammar applied to every candidate, then the chain's pick among those it allows.
Status walk_and_pick(Sampler& s, const float* logits, int32_t n_vocab, std::vector<llama_token_data>& cur,
                     llama_token* token) {
    fill_candidates(logits, n_vocab, &cur);
    llama_token_data_array cur_p = {cur.data(), cur.size(), -1, false};
    Status st = apply_grammar_bounded(s.grammar.get(), &cur_p);
    if (!st.ok()) return st;
    llama_sampler_apply(s.chain.get(), &cur_p);
    if (cur_p.selected < 0 || cur_p.selected >= static_cast<int64_t>(cur_p.size) ||
        cur_p.data[cur_p.selected].logit == -INFINITY) {
        return dead_end();
    }
    *token = cur_p.data[cur_p.selected].id;
    return Status::Ok();
}

// Sampling with a grammar the way llama.cpp's common_sampler_sample does it (what llama-server runs): the
// chain picks a token from the unconstrained candidates, and the grammar is asked about that one token
// only; just when it refuses is the grammar applied to the whole vocabulary and the token picked again.
// Checking one token instead of ~50,000 is what keeps a grammar from slowing the step every request on
// the model shares. Two failure modes become a Status instead of reaching the decode thread: a grammar
// that allows no token leaves every logit at -inf (llama.cpp would pick one anyway and then abort or throw
// when the grammar is told), and llama_sampler_accept throws on a token the grammar cannot take.
// With `walk` given, the whole-vocabulary walk is not done here: the logits are copied into it and
// *deferred set, for sample_walk to finish on another thread.
Status sample_with(Sampler& s, const float* logits, int32_t n_vocab, llama_token* out, std::vector<float>* walk,
                   bool* deferred) {
    thread_local std::vector<llama_token_data> cur;
    try {
        fill_candidates(logits, n_vocab, &cur);
        llama_token_data_array cur_p = {cur.data(), cur.size(), -1, false};
        llama_sampler_apply(s.chain.get(), &cur_p);
        if (cur_p.selected < 0 || cur_p.selected >= static_cast<int64_t>(cur_p.size)) return dead_end();
        llama_token token = cur_p.data[cur_p.selected].id;
        if (s.grammar) {
            llama_token_data single = {token, 1.0f, 0.0f};
            llama_token_data_array one = {&single, 1, -1, false};
            llama_sampler_apply(s.grammar.get(), &one);
            if (single.logit == -INFINITY) {
                if (walk) {
                    walk->assign(logits, logits + n_vocab);
                    *deferred = true;
                    return Status::Ok();
                }
                Status st = walk_and_pick(s, logits, n_vocab, cur, &token);
                if (!st.ok()) return st;
            }
        }
        accept(s, token);
        *out = token;
    } catch (const std::exception& e) {
        return grammar_error(e);
    }
    return Status::Ok();
}

Status no_logits(int32_t idx) { return Status::Error(Code::Fatal, "no logits for output row " + std::to_string(idx)); }

// llama.cpp's GBNF parser trusts a grammar's text in two ways a request can exploit (and the number of
// alternatives, each a stack the grammar walks for every candidate, is bounded): `{m,n}` with n < m
// makes it expand a repetition about 2^64 times (memory grows until the host gives out), and a NUL byte ends
// the C string it is handed, so the grammar that runs is not the one sent. Both are refused here, before
// the parser sees the text; everything else it checks itself.
// Adjacent character classes repeated a variable number of times are ambiguous: a word splits across them
// in as many ways as there are compositions of its length, and llama.cpp's candidate check explores them all
// (8 in a row: 0.5 s a token here; 16: 5 s; 40: two minutes in one candidate, beyond any time check).
constexpr size_t kMaxVariableClassRun = 12;

Status check_grammar_text(const std::string& g) {
    if (g.size() > kMaxGrammarBytes) {
        return Status::Error(Code::InvalidInput, "the grammar has " + std::to_string(g.size()) +
                                                     " bytes; at most " + std::to_string(kMaxGrammarBytes) + " are accepted");
    }
    if (g.find('\0') != std::string::npos) return Status::Error(Code::InvalidInput, "the grammar contains a NUL byte");
    const size_t n = g.size();
    auto skip_quoted = [&](size_t i, char close) {  // i is just past the opening quote or bracket
        while (i < n && g[i] != close) i += g[i] == '\\' ? 2 : 1;
        return i + 1;
    };
    auto read_int = [&](size_t* i, unsigned long long* v) {
        const size_t start = *i;
        *v = 0;
        while (*i < n && g[*i] >= '0' && g[*i] <= '9') {
            *v = std::min(*v * 10 + static_cast<unsigned long long>(g[*i] - '0'), 1ULL << 40);
            ++*i;
        }
        return *i > start;
    };
    auto skip_space = [&](size_t i) {
        while (i < n && (g[i] == ' ' || g[i] == '\t' || g[i] == '\r' || g[i] == '\n')) ++i;
        return i;
    };
    // Whether the element that ends at j is repeated a variable number of times (`*`, `+`, `?`, `{m,}`,
    // `{m,n}` with m < n).
    auto variable_repeat = [&](size_t j) {
        j = skip_space(j);
        if (j >= n) return false;
        if (g[j] == '*' || g[j] == '+' || g[j] == '?') return true;
        if (g[j] != '{') return false;
        j = skip_space(j + 1);
        unsigned long long lo = 0, hi = 0;
        if (!read_int(&j, &lo)) return false;
        j = skip_space(j);
        if (j >= n || g[j] != ',') return false;
        j = skip_space(j + 1);
        return !read_int(&j, &hi) || hi > lo;
    };
    size_t alternatives = 0;
    size_t run = 0;  // character classes repeated a variable number of times, one after another
    for (size_t i = 0; i < n;) {
        const char c = g[i];
        if (c != '[' && c != '.' && c != '{' && c != '}' && c != '#' && c != ' ' && c != '\t' && c != '\r' && c != '\n' &&
            c != '*' && c != '+' && c != '?') {
            run = 0;  // a literal, a rule name, a group or an alternative ends the run
        }
        if (c == '|' && ++alternatives > kMaxGrammarAlternatives) {
            return Status::Error(Code::InvalidInput, "the grammar has more than " +
                                                         std::to_string(kMaxGrammarAlternatives) + " alternatives");
        }
        if (c == '"') {
            i = skip_quoted(i + 1, '"');
        } else if (c == '[' || c == '.') {
            i = c == '[' ? skip_quoted(i + 1, ']') : i + 1;
            run = variable_repeat(i) ? run + 1 : 0;
            if (run > kMaxVariableClassRun) {
                return Status::Error(
                    Code::InvalidInput,
                    "the grammar has more than " + std::to_string(kMaxVariableClassRun) +
                        " variable repetitions of character classes in a row (such as [a-z]{0,30} [a-z]{0,30} "
                        "...): every text splits across them in countless ways, which llama.cpp's grammar "
                        "cannot evaluate in reasonable time; separate them with literals or merge them");
            }
        } else if (c == '#') {
            while (i < n && g[i] != '\n') ++i;
        } else if (c == '{') {
            size_t j = skip_space(i + 1);
            unsigned long long lo = 0, hi = 0;
            if (read_int(&j, &lo)) {
                j = skip_space(j);
                if (j < n && g[j] == ',') {
                    j = skip_space(j + 1);
                    if (read_int(&j, &hi) && hi < lo) {
                        return Status::Error(Code::InvalidInput, "the grammar repeats {" + std::to_string(lo) + "," +
                                                                     std::to_string(hi) +
                                                                     "}: the maximum is below the minimum");
                    }
                }
            }
            i = j;
        } else {
            ++i;
        }
    }
    return Status::Ok();
}

}  // namespace

Status sample_token(Sampler& s, llama_context* ctx, int32_t idx, int32_t n_vocab, llama_token* out) {
    const float* logits = llama_get_logits_ith(ctx, idx);
    if (!logits) return no_logits(idx);
    if (!s.greedy_only) return sample_with(s, logits, n_vocab, out, nullptr, nullptr);
    int32_t best = 0;
    float best_logit = logits[0];
    for (int32_t t = 1; t < n_vocab; ++t) {
        if (logits[t] > best_logit) {  // first maximum wins, as llama.cpp's greedy sampler
            best_logit = logits[t];
            best = t;
        }
    }
    *out = best;
    return Status::Ok();
}

Status sample_or_defer(Sampler& s, llama_context* ctx, int32_t idx, int32_t n_vocab, llama_token* out,
                       std::vector<float>* walk, bool* deferred) {
    *deferred = false;
    if (s.greedy_only || !s.grammar) return sample_token(s, ctx, idx, n_vocab, out);
    const float* logits = llama_get_logits_ith(ctx, idx);
    if (!logits) return no_logits(idx);
    return sample_with(s, logits, n_vocab, out, walk, deferred);
}

Status sample_walk(Sampler& s, const std::vector<float>& logits, llama_token* out) {
    thread_local std::vector<llama_token_data> cur;
    try {
        llama_token token = -1;
        Status st = walk_and_pick(s, logits.data(), static_cast<int32_t>(logits.size()), cur, &token);
        if (!st.ok()) return st;
        accept(s, token);
        *out = token;
    } catch (const std::exception& e) {
        return grammar_error(e);
    }
    return Status::Ok();
}

void token_probs(llama_context* ctx, int32_t idx, int32_t n_vocab, llama_token token, int32_t n_top, TokenProbs* out) {
    const float* logits = llama_get_logits_ith(ctx, idx);
    out->top.clear();
    if (!logits || n_vocab <= 0) return;
    float max_logit = logits[0];
    for (int32_t t = 1; t < n_vocab; ++t) max_logit = std::max(max_logit, logits[t]);
    double sum = 0.0;
    for (int32_t t = 0; t < n_vocab; ++t) sum += std::exp(static_cast<double>(logits[t] - max_logit));
    const float log_z = max_logit + static_cast<float>(std::log(sum));
    out->logprob = logits[token] - log_z;
    const int32_t n = std::min(std::max(n_top, 0), std::min(kMaxTopLogprobs, n_vocab));
    if (n == 0) return;
    thread_local std::vector<llama_token> ids;
    ids.resize(static_cast<size_t>(n_vocab));
    for (int32_t t = 0; t < n_vocab; ++t) ids[static_cast<size_t>(t)] = t;
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(),
                      [logits](llama_token a, llama_token b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (int32_t i = 0; i < n; ++i) out->top.emplace_back(ids[static_cast<size_t>(i)], logits[ids[static_cast<size_t>(i)]] - log_z);
}

Status build_sampler(const llama_vocab* vocab, const SamplingParams& p, Sampler* out) {
    *out = Sampler{};  // a session reuses its Sampler: nothing of the previous request's may remain
    out->n_probs = std::min(p.n_probs, kMaxTopLogprobs);
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
        Status checked = check_grammar_text(p.grammar);
        if (!checked.ok()) return checked;
        // Kept apart from the chain (sample_with): when the grammar refuses the chain's pick, it is applied
        // first, so that the allowed tokens are never cut away by top-k/top-p.
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
        out->grammar.reset(g);
        out->lazy_grammar = !p.grammar_triggers.empty();
    }
    if (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
        llama_sampler_chain_add(chain.get(),
                                llama_sampler_init_penalties(n_vocab, p.penalty_last_n, p.repeat_penalty,
                                                             p.frequency_penalty, p.presence_penalty));
    }
    out->greedy_only = p.temperature <= 0.0f && llama_sampler_chain_n(chain.get()) == 0 && !out->grammar;
    if (p.temperature <= 0.0f) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
    } else {
        if (p.top_k > 0) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_k(p.top_k));
        if (p.top_p < 1.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_p(p.top_p, 1));
        if (p.min_p > 0.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_min_p(p.min_p, 1));
        llama_sampler_chain_add(chain.get(), llama_sampler_init_temp(p.temperature));
        llama_sampler_chain_add(chain.get(), llama_sampler_init_dist(p.seed));
    }
    out->chain = std::move(chain);
    return Status::Ok();
}

}  // namespace dmr
