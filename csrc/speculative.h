// Drafters for speculative decoding. The engine verifies every draft inside its shared batch: the target
// samples at each drafted position with the request's own sampler and keeps drafts while they match, so
// the output distribution is exactly the target's (greedy output is token-for-token identical).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "context.h"
#include "llama.h"
#include "model.h"
#include "status.h"

namespace dmr {

enum class SpecType : int32_t { Off = 0, Ngram = 1, DraftModel = 2 };

struct SpecParams {
    SpecType type = SpecType::Off;
    int32_t n_max = 8;            // most tokens drafted per step
    int32_t ngram_min = 2;        // n-gram drafter: shortest suffix to look up ...
    int32_t ngram_max = 4;        // ... and longest
    float min_acceptance = 0.0f;  // a request whose acceptance EMA falls below this stops drafting
    bool force = false;           // keep a draft model even where calibration says it cannot pay
    ContextParams draft_ctx;      // draft model's context (n_seq_max is set to the number of slots)
};

class Drafter {
public:
    virtual ~Drafter() = default;
    // Proposes up to n_max tokens that continue `history` (the slot's full token sequence).
    virtual Status draft(int32_t slot, const std::vector<llama_token>& history, int32_t n_max,
                         std::vector<llama_token>* out) = 0;
    // The slot's sequence was reset or reassigned.
    virtual void forget(int32_t /*slot*/) {}
    // Seconds the last draft() spent catching up on history it had not seen (after a pause): a cost of
    // having stopped, not of drafting, so the engine leaves it out when it judges whether drafting pays.
    virtual double last_catchup_seconds() const { return 0.0; }
    // Measured seconds to draft one token after `context` (0: free, < 0: could not measure). Uses and then
    // clears `slot`.
    virtual double measure_token_seconds(int32_t /*slot*/, const std::vector<llama_token>& /*context*/) {
        return 0.0;
    }
};

// Prompt lookup: find the latest earlier occurrence of the history's last n tokens (n from ngram_max down
// to ngram_min) and propose what followed it. Costs microseconds; pays off when the output repeats the
// input (edits, rewrites, extraction, code).
class NgramDrafter : public Drafter {
public:
    NgramDrafter(int32_t ngram_min, int32_t ngram_max) : min_(ngram_min), max_(ngram_max) {}
    Status draft(int32_t slot, const std::vector<llama_token>& history, int32_t n_max,
                 std::vector<llama_token>* out) override;

private:
    int32_t min_;
    int32_t max_;
};

// A smaller model with the same vocabulary drafts greedily; it keeps its own KV cache per slot and only
// evaluates what changed since its last draft.
class ModelDrafter : public Drafter {
public:
    static Status create(const Model* target, const Model* draft, const ContextParams& params, int32_t n_slots,
                         std::unique_ptr<Drafter>* out);
    Status draft(int32_t slot, const std::vector<llama_token>& history, int32_t n_max,
                 std::vector<llama_token>* out) override;
    void forget(int32_t slot) override;
    double last_catchup_seconds() const override { return catchup_seconds_; }
    double measure_token_seconds(int32_t slot, const std::vector<llama_token>& context) override;
    ~ModelDrafter() override;

private:
    ModelDrafter() = default;
    Status decode(int32_t slot, const llama_token* tokens, int32_t n, bool logits_last);

    const Model* draft_ = nullptr;
    ContextPtr ctx_;
    uint32_t n_batch_ = 0;
    uint32_t n_ctx_ = 0;
    std::vector<std::vector<llama_token>> cached_;  // per slot: tokens in the draft KV cache
    llama_batch batch_{};
    bool batch_allocated_ = false;
    double catchup_seconds_ = 0.0;
};

// Checks that draft and target tokenize alike (same vocabulary size and the same text for every token
// of a sample), as llama.cpp's speculative example does.
Status check_vocab_compatible(const Model& target, const Model& draft);

}  // namespace dmr
