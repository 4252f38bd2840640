// Engine: one model, one llama_context with N sequence slots, and one decode thread that serves every
// request at once (continuous batching).
//
// Threading contract
// - submit / abort / set_paused / drain / stats may be called from any thread; they take a short mutex.
// - The decode thread owns the context, the slots and the samplers. It never calls into Python and never
//   waits on a consumer: results leave through the EventQueue, whose fd asyncio watches.
// - Each step puts the next token of every generating request and prompt chunks of new requests into ONE
//   llama_decode; requests join and leave between steps.
//
// KV-cache reuse: a slot keeps the tokens of its last request after it finishes. A new request takes the
// idle slot holding the longest common prefix with its prompt (LRU among equals, so idle caches are evicted
// oldest first); when a busy slot holds a much longer matching prefix (a shared system prompt), that prefix
// is shared into the new slot with llama_memory_seq_cp (cells are shared, not copied, in the unified cache).
// Sequence ids are per slot, so one conversation's cells are never visible to another's attention.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "context.h"
#include "event_queue.h"
#include "model.h"
#include "sampling.h"
#include "session.h"
#include "speculative.h"
#include "status.h"
#include "text_stream.h"

namespace dmr {

struct EngineParams {
    ContextParams ctx;            // ctx.n_ctx: KV cells of all slots together; ctx.n_seq_max is set to n_slots
    int32_t n_slots = 4;
    int32_t prefill_chunk = 512;  // most prompt tokens one request adds to a step while others decode
    int32_t prefill_group = 32;   // a step takes further prompts (oldest first) only below this many prompt tokens
    bool kv_unified = false;      // one KV pool for all slots (see engine.cpp: costs batch invariance)
    SpecParams spec;              // speculative decoding (off by default)
    std::string step_trace;       // when set, a file that gets one line per llama_decode (see Engine::trace_step)
};

struct RequestSpec {
    std::vector<llama_token> prompt;
    SamplingParams sampling;
    GenerateParams gen;
    bool speculative = true;      // allowed to speculate when the engine has a drafter
};

struct EngineStats {
    uint64_t requests = 0;          // submitted
    uint64_t finished = 0;
    uint64_t aborted = 0;
    uint64_t failed = 0;
    uint64_t prompt_tokens = 0;     // prompt tokens evaluated
    uint64_t cached_tokens = 0;     // prompt tokens reused from the KV cache
    uint64_t generated_tokens = 0;
    uint64_t steps = 0;             // llama_decode calls
    uint64_t drafted = 0;           // speculative tokens proposed
    uint64_t accepted = 0;          // ... and accepted
    double decode_seconds = 0.0;    // time inside llama_decode
    int32_t slots_total = 0;
    int32_t slots_busy = 0;
    int32_t queue_depth = 0;        // submitted, not yet in a slot
    int64_t kv_cells_used = 0;      // sum of tokens held by all slots (shared prefixes counted per slot)
    int64_t kv_cells_total = 0;
    int32_t live_requests = 0;      // requests the engine still tracks (leak check)
    int32_t speculation = 0;        // 1 while a drafter is in use (0: none configured, or it cannot pay here)
};

class Engine {
public:
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // `model` (and `draft`, when given) must outlive the engine.
    static Status create(const Model* model, const EngineParams& params, const Model* draft,
                         std::unique_ptr<Engine>* out);

    // Validates and queues a request. Errors that can be known now (bad grammar, prompt longer than the
    // context, token ids out of range, duplicate id) are returned here; later ones arrive as Error events.
    Status submit(uint64_t id, RequestSpec spec);
    // The request ends at the next step with finish=Abort; its cells stay as a reusable prefix. Unknown or
    // finished ids are ignored.
    void abort(uint64_t id);
    // A paused request is skipped by the decode loop (its consumer is slow); it keeps its slot.
    void set_paused(uint64_t id, bool paused);

    int fd() const { return events_.fd(); }
    void drain(std::vector<Event>* out) { events_.drain(out); }
    EngineStats stats() const;
    uint32_t n_ctx() const { return n_ctx_; }
    uint32_t n_ctx_seq() const { return n_ctx_seq_; }
    int32_t n_slots() const;
    // Stops the decode thread; pending and running requests end with an Error event.
    void shutdown();

private:
    struct Request;
    struct Slot;
    struct BatchEntry;

    Engine() = default;
    void run();
    bool take_commands(std::vector<uint64_t>* aborts);  // false: shutting down
    void publish_gauges();
    void trace_step(std::chrono::steady_clock::time_point start, double seconds);
    void handle_aborts(const std::vector<uint64_t>& aborts);
    void admit();
    bool has_work() const;
    bool build_batch();
    void process_outputs();
    void on_decode_failure(int32_t rc);
    bool evict_idle_cache();
    void maybe_draft(Slot& slot);
    struct SpeculationYield {
        double gain = 0.0;        // best expected tokens per plain step's time, over the draft lengths tried
        int32_t best_k = 1;       // the draft length giving it
        double draft_cost = 0.0;  // a drafted token's cost as a share of a target step
        std::string detail;       // the yield per draft length, for the log
        std::string failure;      // non-empty: a step could not be timed
    };
    SpeculationYield measure_speculation(const std::vector<llama_token>& context);
    void calibrate_speculation();
    Status sample_next(Slot& s, int32_t row, llama_token* token, bool* deferred);
    void walker_run();
    void collect_walks();
    void stop_walker();
    void update_speculation(Request& req, int32_t drafted, int32_t accepted);
    // Takes a sampled token through stop/eos/length logic; returns true when the request finished.
    bool emit_token(Slot& slot, llama_token token, int32_t row);  // row: the logits it was sampled from
    void finish(Slot& slot, Finish reason);
    void fail(Slot& slot, const Status& st);
    void release(Slot& slot);
    void drop_cells(Slot& slot, size_t keep);

    const Model* model_ = nullptr;
    ContextPtr ctx_;
    std::atomic<bool> abort_decode_{false};
    uint32_t n_ctx_ = 0;
    uint32_t n_ctx_seq_ = 0;
    uint32_t n_batch_ = 0;
    int32_t prefill_chunk_ = 512;
    int32_t prefill_group_ = 32;
    uint64_t arrivals_ = 0;         // submission counter (under mutex_): prompts are evaluated oldest first
    std::vector<Slot*> prefilling_;
    bool kv_unified_ = false;
    std::FILE* step_trace_ = nullptr;  // EngineParams::step_trace, opened at create
    EventQueue events_;
    std::unique_ptr<Drafter> drafter_;
    SpecParams spec_;
    double step_seconds_ = 0.0;     // duration of the last llama_decode
    double plain_step_ema_ = 0.0;   // duration of steps without drafts
    int32_t spec_start_cap_ = 4;    // first draft length of a request (the calibrated best)
    bool draft_free_ = false;       // drafting costs nothing measurable (n-gram lookup)
    std::vector<llama_token> history_;
    bool step_has_prefill_ = false;
    EngineStats step_counts_;       // this step's counters, added to stats_ under one lock per step
    bool step_has_drafts_ = false;
    double step_catchup_ = 0.0;     // a draft model's catch-up time within this step (see update_speculation)

    // shared with callers, under mutex_
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::deque<std::unique_ptr<Request>> incoming_;
    std::vector<uint64_t> abort_ids_;
    std::unordered_map<uint64_t, Request*> live_;   // id -> request, for abort/pause lookups
    EngineStats stats_;

    // decode-thread state
    std::vector<Slot> slots_;
    std::deque<std::unique_ptr<Request>> waiting_;
    llama_batch batch_{};
    bool batch_allocated_ = false;
    std::vector<BatchEntry> entries_;
    std::vector<Event> out_events_;
    uint64_t clock_ = 0;       // step counter for LRU
    std::thread thread_;
    // Grammar walks over the whole vocabulary, off the decode thread (sample_next): requests queued by the
    // decode thread, results handed back under mutex_ (take_commands wakes up for them).
    struct Walked {
        uint64_t id;
        Status status;
        llama_token token;
    };
    std::thread walker_;
    std::mutex walk_mutex_;
    std::condition_variable walk_cv_;
    std::deque<Request*> walk_queue_;  // guarded by walk_mutex_
    bool walk_stop_ = false;           // guarded by walk_mutex_
    std::vector<Walked> walked_;       // guarded by mutex_
};

}  // namespace dmr
