#include "engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>

#include "log_sink.h"

namespace dmr {

namespace {
constexpr int32_t kFinishAbort = 3;  // Finish::Stop=1, Length=2; abort only exists for engine requests
// the share of drafted tokens the load-time calibration assumes accepted (calibrate_speculation)
constexpr double kCalibrationAcceptance = 0.9;
using Clock = std::chrono::steady_clock;

}  // namespace

enum class ReqState { Waiting, Prefill, Generating, Done };

struct Engine::Request {
    uint64_t id = 0;
    RequestSpec spec;
    Sampler sampler;
    TextStream stream;
    ReqState state = ReqState::Waiting;
    std::atomic<bool> paused{false};
    size_t n_past = 0;           // prompt tokens already in the slot's cache
    llama_token pending = -1;    // sampled, not yet decoded
    int32_t n_cached = 0;
    int32_t n_generated = 0;
    uint64_t arrival = 0;        // submission order: prompts are evaluated first come, first served
    // speculative decoding
    std::vector<llama_token> drafts;   // in the current batch after `pending`
    int32_t n_drafted = 0;
    int32_t n_accepted = 0;
    float gain_ema = 1.5f;       // tokens per plain-step cost while speculating; < 1 means a net loss
    int32_t cooldown = 0;        // steps to wait before drafting again
    // a grammar walk for the next token runs on the walker thread (sample_next): the request sits out the
    // decode steps meanwhile, and an abort waits for the walk to come back (it uses `sampler`)
    bool walking = false;
    bool abort_when_walked = false;
    std::vector<float> walk_logits;
    int32_t draft_cap = 4;       // current draft length (adapts between 1 and SpecParams::n_max)
    int32_t backoff = 8;
};

struct Engine::Slot {
    int32_t seq = 0;
    std::vector<llama_token> tokens;   // exactly what the KV cache holds for this sequence
    Request* req = nullptr;            // owned by live_/waiting_ bookkeeping (see `owned`)
    std::unique_ptr<Request> owned;
    uint64_t last_used = 0;
};

struct Engine::BatchEntry {
    Slot* slot;
    int32_t first;      // index of the first token of this slot in the batch
    int32_t count;      // tokens of this slot in the batch
    bool prefill;       // prompt chunk (else: pending token + drafts)
    bool completes;     // prefill chunk that ends the prompt (its last token has logits)
};

Engine::~Engine() {
    shutdown();
    if (batch_allocated_) llama_batch_free(batch_);
    if (step_trace_) std::fclose(step_trace_);
}

Status Engine::create(const Model* model, const EngineParams& params, const Model* draft,
                      std::unique_ptr<Engine>* out) {
    if (params.n_slots < 1) return Status::Error(Code::InvalidInput, "n_slots must be >= 1");
    std::unique_ptr<Engine> e(new Engine());
    e->model_ = model;
    ContextParams cp = params.ctx;
    cp.n_seq_max = static_cast<uint32_t>(params.n_slots);
    cp.embeddings = false;
    // Default: one KV stream per slot (n_ctx / n_slots cells each, as llama-server's -np). Each sequence's
    // cells then sit at the same places as in a single-sequence context, so its attention sums run in the
    // same order whatever else is batched: greedy output is bit-identical alone, batched and speculated.
    // In a unified cache a sequence's cells interleave with others' and SIMD reductions over the masked
    // row group the terms differently, which flips near-tied tokens (measured: 3 of 8 prompts).
    // Where identity still ends on the CPU: ggml-cpu's flash-attention kernel has three paths with different
    // rounding - one query row over >= 512 cache cells (split-KV), >= 64 query rows (tiled), and the rest -
    // so a 1-token decode step and a 2..9-row speculative verification differ once a slot holds 256+ cells
    // (the cache view is padded to 256), and a long prompt evaluated after a cached prefix tiles differently
    // from one evaluated from 0. Turning flash attention off moves the problem to the KQ matmul, whose
    // one-row and many-row kernels differ too (measured both ways on this llama.cpp).
    cp.kv_unified = params.kv_unified;
    Status st = make_context(*model, cp, &e->abort_decode_, &e->ctx_);
    if (!st.ok()) return st;
    e->n_ctx_ = llama_n_ctx(e->ctx_.get());
    e->n_ctx_seq_ = llama_n_ctx_seq(e->ctx_.get());
    e->n_batch_ = llama_n_batch(e->ctx_.get());
    e->kv_unified_ = params.kv_unified;
    e->prefill_chunk_ = std::max<int32_t>(1, params.prefill_chunk);
    e->prefill_group_ = std::max<int32_t>(1, params.prefill_group);
    if (!params.step_trace.empty()) {
        e->step_trace_ = std::fopen(params.step_trace.c_str(), "w");
        if (!e->step_trace_) return Status::Error(Code::InvalidInput, "cannot write the step trace " + params.step_trace);
    }
    const int32_t spec_max = params.spec.type == SpecType::Off ? 0 : std::max<int32_t>(0, params.spec.n_max);
    e->batch_ = llama_batch_init(static_cast<int32_t>(e->n_batch_) + params.n_slots * (spec_max + 1), 0, 1);
    e->batch_allocated_ = true;
    e->slots_.resize(static_cast<size_t>(params.n_slots));
    for (int32_t i = 0; i < params.n_slots; ++i) e->slots_[static_cast<size_t>(i)].seq = i;
    if (params.spec.type == SpecType::Ngram) {
        e->drafter_ = std::make_unique<NgramDrafter>(params.spec.ngram_min, params.spec.ngram_max);
    } else if (params.spec.type == SpecType::DraftModel) {
        if (!draft) return Status::Error(Code::InvalidInput, "draft-model speculation needs a draft model");
        ContextParams dp = params.spec.draft_ctx;
        if (dp.n_ctx == 0) dp.n_ctx = e->n_ctx_;
        st = ModelDrafter::create(model, draft, dp, params.n_slots, &e->drafter_);
        if (!st.ok()) return st;
    }
    e->spec_ = params.spec;
    e->stats_.slots_total = params.n_slots;
    e->stats_.kv_cells_total = e->n_ctx_;
    // Every llama_decode of this engine runs on its decode thread, the calibration included: each thread
    // that computes gets its own OpenMP team, and once more threads are managed than there are cores, libgomp
    // stops spinning at barriers and sleeps instead (measured: calibrating on the caller's thread left the
    // F16 target decoding at 0.56x for the engine's whole life). create() returns once it is done.
    std::promise<void> ready;
    std::future<void> calibrated = ready.get_future();
    // the promise moves into the thread: it (and the shared state) must outlive set_value's return
    e->thread_ = std::thread([raw = e.get(), ready = std::move(ready)]() mutable {
        if (raw->drafter_) raw->calibrate_speculation();
        {
            std::lock_guard<std::mutex> lock(raw->mutex_);
            raw->stats_.speculation = raw->drafter_ ? 1 : 0;
        }
        ready.set_value();
        raw->run();
    });
    calibrated.wait();
    *out = std::move(e);
    return Status::Ok();
}

Status Engine::submit(uint64_t id, RequestSpec spec) {
    if (spec.prompt.empty()) return Status::Error(Code::InvalidInput, "the prompt is empty");
    for (llama_token t : spec.prompt) {
        if (!model_->valid_token(t)) {
            return Status::Error(Code::InvalidInput, "prompt token " + std::to_string(t) + " is outside the vocabulary");
        }
    }
    if (spec.prompt.size() >= n_ctx_seq_) {
        return Status::Error(Code::ContextFull, "the prompt has " + std::to_string(spec.prompt.size()) +
                                                    " tokens but the context holds " + std::to_string(n_ctx_seq_) +
                                                    " (at least one must be left to generate)");
    }
    auto req = std::make_unique<Request>();
    req->id = id;
    Status st = build_sampler(model_->vocab(), spec.sampling, &req->sampler);
    if (!st.ok()) return st;
    req->stream = TextStream(spec.gen.stop);
    req->spec = std::move(spec);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) return Status::Error(Code::Aborted, "the engine is shut down");
        if (live_.count(id)) return Status::Error(Code::InvalidInput, "request id " + std::to_string(id) + " is in use");
        live_[id] = req.get();
        req->arrival = arrivals_++;
        incoming_.push_back(std::move(req));
        stats_.requests++;
    }
    cv_.notify_one();
    return Status::Ok();
}

void Engine::abort(uint64_t id) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!live_.count(id)) return;
        abort_ids_.push_back(id);
    }
    cv_.notify_one();
}

void Engine::set_paused(uint64_t id, bool paused) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = live_.find(id);
        if (it == live_.end()) return;
        it->second->paused.store(paused, std::memory_order_relaxed);
    }
    if (!paused) cv_.notify_one();
}

EngineStats Engine::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    EngineStats s = stats_;
    s.live_requests = static_cast<int32_t>(live_.size());
    return s;
}

int32_t Engine::n_slots() const { return static_cast<int32_t>(slots_.size()); }

void Engine::shutdown() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_ && !thread_.joinable()) return;
        stop_ = true;
    }
    abort_decode_.store(true);
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

// ---- decode thread ---------------------------------------------------------------------------------

bool Engine::has_work() const {
    bool free_slot = false;
    for (const auto& s : slots_) {
        if (!s.req) {
            free_slot = true;
        } else if (!s.req->paused.load(std::memory_order_relaxed) && !s.req->walking) {
            return true;
        }
    }
    return !walked_.empty() || (free_slot && !waiting_.empty());
}

bool Engine::take_commands(std::vector<uint64_t>* aborts) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return stop_ || !incoming_.empty() || !abort_ids_.empty() || has_work(); });
    if (stop_) return false;
    while (!incoming_.empty()) {
        waiting_.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
    }
    aborts->swap(abort_ids_);
    return true;
}

void Engine::publish_gauges() {
    int32_t busy = 0;
    int64_t cells = 0;
    for (const auto& s : slots_) {
        busy += s.req ? 1 : 0;
        cells += static_cast<int64_t>(s.tokens.size());
    }
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.slots_busy = busy;
    stats_.kv_cells_used = cells;
    stats_.queue_depth = static_cast<int32_t>(waiting_.size());
    // counters gathered lock-free during the step, published once per step
    stats_.steps += step_counts_.steps;
    stats_.decode_seconds += step_counts_.decode_seconds;
    stats_.generated_tokens += step_counts_.generated_tokens;
    stats_.prompt_tokens += step_counts_.prompt_tokens;
    stats_.cached_tokens += step_counts_.cached_tokens;
    stats_.drafted += step_counts_.drafted;
    stats_.accepted += step_counts_.accepted;
    step_counts_ = EngineStats{};
}

void Engine::run() {
    std::vector<uint64_t> aborts;
    while (true) {
        aborts.clear();
        if (!take_commands(&aborts)) break;
        handle_aborts(aborts);
        collect_walks();
        admit();
        // The step's cost as a request sees it: drafting, the shared decode and sampling.
        const auto t_step = Clock::now();
        if (!build_batch()) {
            publish_gauges();
            events_.push_many(out_events_);
            continue;
        }
        const auto t0 = Clock::now();
        const int32_t rc = llama_decode(ctx_.get(), batch_);
        const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
        step_counts_.steps++;
        step_counts_.decode_seconds += dt;
        if (step_trace_) trace_step(t0, dt);
        if (rc != 0) {
            on_decode_failure(rc);
        } else {
            step_seconds_ = std::chrono::duration<double>(Clock::now() - t_step).count();
            if (!step_has_drafts_ && !step_has_prefill_) {
                plain_step_ema_ = plain_step_ema_ > 0 ? 0.8 * plain_step_ema_ + 0.2 * step_seconds_ : step_seconds_;
            }
            process_outputs();
        }
        publish_gauges();
        events_.push_many(out_events_);
    }
    // shutdown: everything still known ends with an error event (once no walk uses a request's sampler)
    stop_walker();
    Status st = Status::Error(Code::Aborted, "the engine was shut down");
    for (auto& s : slots_) {
        if (s.req) fail(s, st);
    }
    for (auto& r : waiting_) {
        Event ev;
        ev.id = r->id;
        ev.kind = EventKind::Error;
        ev.error_code = static_cast<int32_t>(st.code);
        ev.error = st.msg;
        out_events_.push_back(std::move(ev));
    }
    waiting_.clear();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        live_.clear();
        incoming_.clear();
    }
    events_.push_many(out_events_);
}

void Engine::trace_step(Clock::time_point start, double seconds) {
    // One line per llama_decode: start (s, steady clock), decode rows (with drafts), prompt tokens, seconds
    // inside llama_decode. bench/step_trace.py summarises it: where a workload's time goes, and whether the
    // decode thread ever waits (gaps between steps).
    int32_t rows = 0, prompt = 0;
    for (const auto& e : entries_) (e.prefill ? prompt : rows) += e.count;
    std::fprintf(step_trace_, "%.6f %d %d %.6f\n", std::chrono::duration<double>(start.time_since_epoch()).count(),
                 rows, prompt, seconds);
    std::fflush(step_trace_);  // readable while the server runs (tail -f), and complete if it is killed
}

void Engine::handle_aborts(const std::vector<uint64_t>& aborts) {
    for (uint64_t id : aborts) {
        bool found = false;
        for (auto& s : slots_) {
            if (s.req && s.req->id == id) {
                if (s.req->walking) {
                    s.req->abort_when_walked = true;
                } else {
                    finish(s, static_cast<Finish>(kFinishAbort));
                }
                found = true;
                break;
            }
        }
        if (found) continue;
        for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
            if ((*it)->id != id) continue;
            Event ev;
            ev.id = id;
            ev.kind = EventKind::Done;
            ev.finish = kFinishAbort;
            ev.n_prompt = static_cast<int32_t>((*it)->spec.prompt.size());
            out_events_.push_back(std::move(ev));
            waiting_.erase(it);
            std::lock_guard<std::mutex> lock(mutex_);
            live_.erase(id);
            stats_.aborted++;
            break;
        }
    }
}

static size_t common_prefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

void Engine::drop_cells(Slot& slot, size_t keep) {
    if (keep >= slot.tokens.size()) return;
    llama_memory_t mem = llama_get_memory(ctx_.get());
    if (!llama_memory_seq_rm(mem, slot.seq, static_cast<llama_pos>(keep), -1)) {
        llama_memory_seq_rm(mem, slot.seq, -1, -1);
        keep = 0;
    }
    slot.tokens.resize(keep);
    if (drafter_ && keep == 0) drafter_->forget(slot.seq);
}

void Engine::admit() {
    while (!waiting_.empty()) {
        Request* req = waiting_.front().get();
        const auto& prompt = req->spec.prompt;
        // Which free slot: one whose cache the prompt extends (or an empty one) loses nothing; the free slot
        // sharing the longest prefix would lose whatever follows it. Taking that slot for a short shared
        // prefix (a common system prompt) destroyed another conversation's cache: two conversations taking
        // turns on two slots each found the other's tail in "their" slot every other turn (10 of ~130
        // tokens reused). So a slot holding other text is only taken when most of it is reused (as
        // llama-server's slot-prompt similarity, 0.5), else an empty or extendable slot, else the least
        // recently used one; the shared prefix is then copied from whichever slot holds it longest.
        std::vector<size_t> lcp(slots_.size(), 0);  // the prompt's common prefix with each slot's cache
        size_t longest = slots_.size();   // the free slot sharing the longest prefix
        size_t lossless = slots_.size();  // of the free slots that would lose nothing, the one sharing most
        size_t oldest = slots_.size();    // the least recently used free slot
        const size_t none = slots_.size();
        for (size_t i = 0; i < slots_.size(); ++i) {
            const Slot& s = slots_[i];
            lcp[i] = common_prefix(s.tokens, prompt);
            if (s.req) continue;
            if (longest == none || lcp[i] > lcp[longest] ||
                (lcp[i] == lcp[longest] && s.last_used < slots_[longest].last_used))
                longest = i;
            if (lcp[i] == s.tokens.size() && (lossless == none || lcp[i] > lcp[lossless])) lossless = i;
            if (oldest == none || s.last_used < slots_[oldest].last_used) oldest = i;
        }
        if (longest == none) return;  // all slots busy: wait for one to finish
        size_t chosen = longest;
        if (lcp[longest] < slots_[longest].tokens.size()) {
            if (lossless != none) {
                chosen = lossless;
            } else if (2 * lcp[longest] < slots_[longest].tokens.size()) {
                chosen = oldest;
            }
        }
        Slot* best = &slots_[chosen];
        const size_t best_lcp = lcp[chosen];
        Slot* donor = nullptr;
        size_t donor_lcp = 0;
        for (size_t i = 0; i < slots_.size(); ++i) {
            if (i != chosen && lcp[i] > donor_lcp) {
                donor = &slots_[i];
                donor_lcp = lcp[i];
            }
        }

        size_t keep = best_lcp;
        // Another slot, running or idle, holds a clearly longer prefix (a shared system prompt): share its
        // cells. In a unified cache the cells are shared; across streams llama.cpp copies the whole stream
        // (one memcpy, far cheaper than recomputing the prefix), then the tail beyond the prefix is dropped.
        if (donor && donor_lcp > best_lcp + 16) {
            llama_memory_t mem = llama_get_memory(ctx_.get());
            llama_memory_seq_rm(mem, best->seq, -1, -1);
            if (kv_unified_) {
                llama_memory_seq_cp(mem, donor->seq, best->seq, 0, static_cast<llama_pos>(donor_lcp));
            } else {
                llama_memory_seq_cp(mem, donor->seq, best->seq, -1, -1);
                llama_memory_seq_rm(mem, best->seq, static_cast<llama_pos>(donor_lcp), -1);
            }
            best->tokens.assign(donor->tokens.begin(), donor->tokens.begin() + static_cast<long>(donor_lcp));
            if (drafter_) drafter_->forget(best->seq);
            keep = donor_lcp;
        }
        if (keep >= prompt.size()) keep = prompt.size() - 1;  // the last prompt token is evaluated for logits
        drop_cells(*best, keep);
        keep = best->tokens.size();

        best->owned = std::move(waiting_.front());
        waiting_.pop_front();
        best->req = req;
        best->last_used = ++clock_;
        req->state = ReqState::Prefill;
        req->draft_cap = spec_start_cap_;
        req->n_past = keep;
        req->n_cached = static_cast<int32_t>(keep);
        step_counts_.cached_tokens += keep;
    }
}

bool Engine::build_batch() {
    entries_.clear();
    step_catchup_ = 0.0;
    batch_.n_tokens = 0;
    auto add = [&](llama_token t, llama_pos pos, int32_t seq, bool logits) { batch_push(batch_, t, pos, seq, logits); };
    // 1. one token (plus drafts) for every generating request: decode streams never stall
    int32_t n_decoding = 0;
    for (auto& s : slots_) {
        Request* r = s.req;
        if (!r || r->state != ReqState::Generating || r->pending < 0 || r->paused.load(std::memory_order_relaxed)) continue;
        r->drafts.clear();
        if (drafter_ && r->spec.speculative) maybe_draft(s);
        const int32_t first = batch_.n_tokens;
        const llama_pos pos = static_cast<llama_pos>(s.tokens.size());
        add(r->pending, pos, s.seq, true);
        for (size_t j = 0; j < r->drafts.size(); ++j) add(r->drafts[j], pos + 1 + static_cast<llama_pos>(j), s.seq, true);
        entries_.push_back({&s, first, batch_.n_tokens - first, false, false});
        ++n_decoding;
    }
    // 2. prompt chunks, oldest request first. A step takes one prompt (chunked while others decode) and
    // starts another only while the step holds fewer than prefill_group prompt tokens. When several
    // prompts arrive together - users who all got their answer in the same step send their next turn at
    // once - evaluating them one after another gives the k-th its first token after k prompts' work,
    // where one shared step would make all of them wait for all of it (llama-server's way: measured,
    // warm-turn TTFT p50 in bench_serve's multiuser). Tiny prompts still share a step, where the step's
    // fixed cost (reading the weights once) would otherwise dominate. The first come is served first, so
    // nothing starves: a later prompt only waits for the earlier ones.
    int32_t budget = static_cast<int32_t>(n_batch_) - batch_.n_tokens;
    const int32_t per_request = n_decoding > 0 ? prefill_chunk_ : static_cast<int32_t>(n_batch_);
    prefilling_.clear();
    for (auto& s : slots_) {
        Request* r = s.req;
        if (r && r->state == ReqState::Prefill && !r->paused.load(std::memory_order_relaxed)) prefilling_.push_back(&s);
    }
    std::sort(prefilling_.begin(), prefilling_.end(),
              [](const Slot* a, const Slot* b) { return a->req->arrival < b->req->arrival; });
    int32_t prompt_tokens = 0;
    for (Slot* sp : prefilling_) {
        if (budget <= 0 || prompt_tokens >= prefill_group_) break;
        Slot& s = *sp;
        Request* r = s.req;
        const auto& prompt = r->spec.prompt;
        const int32_t remaining = static_cast<int32_t>(prompt.size() - r->n_past);
        const int32_t take = std::min({remaining, budget, per_request});
        const bool completes = take == remaining;
        const int32_t first = batch_.n_tokens;
        for (int32_t j = 0; j < take; ++j) {
            const size_t idx = r->n_past + static_cast<size_t>(j);
            add(prompt[idx], static_cast<llama_pos>(idx), s.seq, completes && j == take - 1);
        }
        entries_.push_back({&s, first, take, true, completes});
        budget -= take;
        prompt_tokens += take;
    }
    step_has_prefill_ = false;
    step_has_drafts_ = false;
    for (const auto& e : entries_) {
        step_has_prefill_ |= e.prefill;
        step_has_drafts_ |= !e.prefill && e.count > 1;
    }
    return batch_.n_tokens > 0;
}

namespace {
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}
}  // namespace

Engine::SpeculationYield Engine::measure_speculation(const std::vector<llama_token>& context) {
    // Costs are taken as ratios of two measurements made back to back (so both see the same machine
    // state) and the median of several such ratios is used: a ratio of minima taken at different moments
    // let one quiet stretch for the draft and a busy one for the target inflate every gain (a model drafting
    // for itself, 0.7x on a quiet machine, once measured > 1.1x under CI load).
    SpeculationYield out;
    llama_memory_t mem = llama_get_memory(ctx_.get());
    auto timed_rows = [&](int32_t rows) -> double {
        double best = 0.0;
        for (int rep = 0; rep < 3; ++rep) {
            batch_.n_tokens = 0;
            for (int32_t j = 0; j < rows; ++j) {
                const size_t at = static_cast<size_t>(j);
                batch_push(batch_, context[at % context.size()], static_cast<llama_pos>(context.size() + at), 0, true);
            }
            const auto t0 = Clock::now();
            const int32_t rc = llama_decode(ctx_.get(), batch_);
            const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
            llama_memory_seq_rm(mem, 0, static_cast<llama_pos>(context.size()), -1);
            if (rc != 0) return 0.0;
            best = rep == 0 ? dt : std::min(best, dt);
        }
        return best;
    };
    batch_.n_tokens = 0;
    for (size_t j = 0; j < context.size(); ++j) batch_push(batch_, context[j], static_cast<llama_pos>(j), 0, false);
    if (llama_decode(ctx_.get(), batch_) != 0) {
        out.failure = "the target model's step could not be timed";
        return out;
    }
    std::vector<double> draft_ratios;
    for (int round = 0; round < 5; ++round) {
        const double d = drafter_->measure_token_seconds(0, context);
        const double v = timed_rows(1);
        if (d < 0.0 || v <= 0.0) {
            out.failure = d < 0.0 ? "the draft model's step could not be timed" : "the target model's step could not be timed";
            break;
        }
        draft_ratios.push_back(d / v);
    }
    char line[64];
    for (int32_t k : {1, 2, 4, 8}) {
        if (!out.failure.empty() || k > spec_.n_max) break;
        std::vector<double> verify_ratios;
        for (int round = 0; round < 3; ++round) {
            const double v1 = timed_rows(1);
            const double vk = timed_rows(k + 1);
            if (v1 <= 0.0 || vk <= 0.0) {
                out.failure = "the target model's step could not be timed";
                break;
            }
            verify_ratios.push_back(vk / v1);
        }
        if (!out.failure.empty()) break;
        double expected_tokens = 0.0;  // 1 + a + ... + a^k
        for (int32_t j = 0; j <= k; ++j) expected_tokens += std::pow(kCalibrationAcceptance, j);
        out.draft_cost = median(draft_ratios);
        const double gain = expected_tokens / (k * out.draft_cost + median(verify_ratios));
        std::snprintf(line, sizeof(line), "%sk=%d: %.2fx", out.detail.empty() ? "" : ", ", k, gain);
        out.detail += line;
        if (gain > out.gain) {
            out.gain = gain;
            out.best_k = k;
        }
    }
    llama_memory_seq_rm(mem, 0, -1, -1);
    batch_.n_tokens = 0;
    return out;
}

void Engine::calibrate_speculation() {
    // Speculation trades drafting plus verifying k+1 rows for up to k+1 tokens per step. Whether that can
    // pay depends on this machine and model pair, not on the text: measure a plain step v(1), a verification
    // step v(k+1) and one drafted token d, and compute the expected yield per plain step's worth of time
    // when each drafted token is accepted with probability a:
    //     (1 + a + ... + a^k) / (k*d/v(1) + v(k+1)/v(1)).
    // It is judged at a = kCalibrationAcceptance (0.9), not at a = 1: a pair whose best case is 1.2x loses
    // at the 93-96% a same-weights draft really reaches (measured: SmolLM2 Q4_1 drafting for its F16 copy
    // on 2 CPU cores, once dmr's Q4_1 kernel made the draft cost 0.56 of a target step: best case 1.20x,
    // real 0.89-1.06x, since the draft's pass over the prompt and its catch-up after pauses come on top).
    // Where the yield stays below 1.1 (a margin for the timing noise of a few decodes), drafting is switched
    // off for good instead of being tried and backed off from on every request (each try costs the draft
    // model a pass over the prompt). A yield that clears the bar is measured a second time and the lower of
    // the two decides, so that a burst of load during one measurement cannot keep a losing draft on.
    // Costs a few dozen decodes at load.
    const int32_t n_vocab = model_->n_vocab();
    std::vector<llama_token> context;
    for (int32_t i = 0; i < 16; ++i) context.push_back(static_cast<llama_token>((i * 7919 + 11) % n_vocab));
    const double d = drafter_->measure_token_seconds(0, context);
    char line[320];
    if (d == 0.0) {  // n-gram lookup: verification cost alone is judged per request
        draft_free_ = true;
        return;
    }
    SpeculationYield y = d < 0.0 ? SpeculationYield{} : measure_speculation(context);
    if (d < 0.0) y.failure = "the draft model's step could not be timed";
    if (y.failure.empty() && y.gain >= 1.1) {
        SpeculationYield again = measure_speculation(context);
        if (!again.failure.empty() || again.gain < y.gain) y = again;
    }
    if (!y.failure.empty()) {
        std::snprintf(line, sizeof(line), "speculative decoding kept on, judged per request: %s", y.failure.c_str());
        log_line(3, line);
        return;
    }
    spec_start_cap_ = y.best_k;
    if (y.gain < 1.1 && !spec_.force) {
        std::snprintf(line, sizeof(line),
                      "speculative decoding off: a drafted token costs %.2f of a target step here, so with %.0f%% "
                      "of drafts accepted a step would yield at most %.2fx (%s)",
                      y.draft_cost, 100 * kCalibrationAcceptance, y.gain, y.detail.c_str());
        log_line(3, line);
        drafter_.reset();
    } else {
        std::snprintf(line, sizeof(line),
                      "speculative decoding: draft/target step cost %.2f; at %.0f%% acceptance %.2fx (%s)",
                      y.draft_cost, 100 * kCalibrationAcceptance, y.gain, y.detail.c_str());
        log_line(2, line);
    }
}

void Engine::maybe_draft(Slot& s) {
    Request* r = s.req;
    if (r->cooldown > 0) {
        --r->cooldown;
        return;
    }
    // Speculation is judged against the cost of a plain step, so one must have been measured, and is
    // measured again now and then (every 64th step drafts nothing) as the batch changes.
    if (plain_step_ema_ <= 0 || clock_ % 64 == 0) return;
    const int32_t room = static_cast<int32_t>(n_ctx_seq_) - static_cast<int32_t>(s.tokens.size()) - 2;
    int32_t n_max = std::min({spec_.n_max, r->draft_cap, room});
    if (r->spec.gen.max_tokens >= 0) n_max = std::min(n_max, r->spec.gen.max_tokens - r->n_generated - 1);
    if (n_max <= 0) return;
    history_.assign(s.tokens.begin(), s.tokens.end());
    history_.push_back(r->pending);
    Status st = drafter_->draft(s.seq, history_, n_max, &r->drafts);
    if (!st.ok()) r->drafts.clear();
    step_catchup_ += drafter_->last_catchup_seconds();
}

void Engine::on_decode_failure(int32_t rc) {
    Status st = decode_status(rc, "llama_decode");
    if (rc == 1) {
        // No room in the KV cache: free idle prefixes and retry next step; if nothing is idle, the newest
        // prefilling request cannot fit now and fails rather than starving everyone.
        if (evict_idle_cache()) return;
        Slot* victim = nullptr;
        for (auto& e : entries_) {
            if (e.prefill && (!victim || e.slot->last_used > victim->last_used)) victim = e.slot;
        }
        if (victim) {
            fail(*victim, Status::Error(Code::ContextFull, "the KV cache is full (" + std::to_string(n_ctx_) +
                                                              " cells shared by all requests); try again later"));
            return;
        }
        // only generating requests and still no room: end the longest one
        for (auto& e : entries_) {
            if (!victim || e.slot->tokens.size() > victim->tokens.size()) victim = e.slot;
        }
        if (victim) finish(*victim, Finish::Length);
        return;
    }
    for (auto& e : entries_) {
        if (e.slot->req) fail(*e.slot, st);
    }
}

bool Engine::evict_idle_cache() {
    Slot* lru = nullptr;
    for (auto& s : slots_) {
        if (!s.req && !s.tokens.empty() && (!lru || s.last_used < lru->last_used)) lru = &s;
    }
    if (!lru) return false;
    drop_cells(*lru, 0);
    return true;
}

void Engine::process_outputs() {
    uint64_t prompt_tokens = 0;
    for (auto& e : entries_) {
        Slot& s = *e.slot;
        Request* r = s.req;
        if (!r) continue;
        s.last_used = ++clock_;
        if (e.prefill) {
            const auto& prompt = r->spec.prompt;
            s.tokens.insert(s.tokens.end(), prompt.begin() + static_cast<long>(r->n_past),
                            prompt.begin() + static_cast<long>(r->n_past) + e.count);
            r->n_past += static_cast<size_t>(e.count);
            prompt_tokens += static_cast<uint64_t>(e.count);
            if (!e.completes) continue;
            r->state = ReqState::Generating;
            llama_token t = -1;
            bool deferred = false;
            Status st = sample_next(s, e.first + e.count - 1, &t, &deferred);
            if (!st.ok()) {
                fail(s, st);
                continue;
            }
            if (!deferred) emit_token(s, t, e.first + e.count - 1);
            continue;
        }
        // pending token + drafts: the pending one is now in the cache; verify drafts in order. The
        // request may finish (and be released) on any token, so its counters are updated before.
        s.tokens.push_back(r->pending);
        r->pending = -1;
        const int32_t n_drafts = e.count - 1;
        r->n_drafted += n_drafts;
        int32_t accepted = 0;
        for (int32_t j = 0; j <= n_drafts; ++j) {
            llama_token t = -1;
            bool deferred = false;
            // a step with drafts verifies them in order here; a plain one may leave its grammar walk
            // to the walker thread
            Status st = n_drafts == 0 ? sample_next(s, e.first, &t, &deferred)
                                      : sample_token(r->sampler, ctx_.get(), e.first + j, model_->n_vocab(), &t);
            if (!st.ok()) {
                fail(s, st);  // the cache for this slot is dropped with it, drafts included
                break;
            }
            if (deferred) break;  // the token comes back from the walker (collect_walks)
            const bool matches = j < n_drafts && t == r->drafts[static_cast<size_t>(j)];
            if (matches) {
                ++accepted;
                ++r->n_accepted;
            }
            if (emit_token(s, t, e.first + j)) break;   // finished: r is gone
            if (!matches) break;           // t is the new pending token
            // the draft was right: it is already in the cache, and its logits give the next token
            s.tokens.push_back(t);
            r->pending = -1;
        }
        if (n_drafts > 0) {
            // cells of rejected drafts go; the cache holds exactly s.tokens again
            llama_memory_seq_rm(llama_get_memory(ctx_.get()), s.seq, static_cast<llama_pos>(s.tokens.size()), -1);
            if (s.req == r && !step_has_prefill_) update_speculation(*r, n_drafts, accepted);
            step_counts_.drafted += static_cast<uint64_t>(n_drafts);
            step_counts_.accepted += static_cast<uint64_t>(accepted);
        }
    }
    step_counts_.prompt_tokens += prompt_tokens;
}

void Engine::update_speculation(Request& r, int32_t drafted, int32_t accepted) {
    // Tokens this step yielded per plain step's worth of time (drafting included, a draft model's catch-up
    // after a pause left out): below 1, drafting lost time. Backing off doubles the pause each time; only a
    // step that clearly paid (>= 1.1) resets it, so a request whose drafts are all accepted but too
    // expensive does not oscillate between drafting and not.
    const double plain = plain_step_ema_ > 0 ? plain_step_ema_ : step_seconds_;
    const double spent = std::max(step_seconds_ - step_catchup_, 1e-6);
    const double gain = plain > 0 ? (1.0 + accepted) * plain / spent : 1.0;
    r.gain_ema = static_cast<float>(0.7 * r.gain_ema + 0.3 * gain);
    const float acceptance = r.n_drafted > 0 ? static_cast<float>(r.n_accepted) / static_cast<float>(r.n_drafted) : 1.0f;
    if (r.gain_ema < 1.0f || (r.n_drafted >= 16 && acceptance < spec_.min_acceptance)) {
        r.cooldown = r.backoff;
        r.backoff = std::min(r.backoff * 2, 1024);
        r.gain_ema = 1.0f;
        r.draft_cap = std::max(1, r.draft_cap / 2);
        return;
    }
    if (gain >= 1.1) r.backoff = 8;
    // Draft length follows what gets accepted (rejected rows cost verification and drafting time) and
    // grows one at a time while whole drafts are accepted and paying.
    // A free drafter (n-gram lookup) doubles it: its drafts cost only their verification rows, and when the
    // output copies the prompt, whole spans are accepted.
    const int32_t grown = draft_free_ ? r.draft_cap * 2 : r.draft_cap + 1;
    r.draft_cap = accepted == drafted ? (gain >= 1.0 ? std::min(grown, spec_.n_max) : r.draft_cap)
                                      : std::max(1, accepted + 1);
}

Status Engine::sample_next(Slot& s, int32_t row, llama_token* token, bool* deferred) {
    // A grammar that refuses the chain's pick is walked over the whole vocabulary: up to 2 s a token for a
    // costly one, during which every other request on the model would wait for the next decode step (a
    // 1,024-value enum made a bystander's longest token gap 43x its gap alone). The walk goes to the walker
    // thread instead; the request sits out the steps until its token comes back. Log-probabilities are read
    // from the row at emit time, so a request asking for them is sampled here.
    Request* r = s.req;
    *deferred = false;
    if (r->sampler.n_probs >= 0) return sample_token(r->sampler, ctx_.get(), row, model_->n_vocab(), token);
    Status st = sample_or_defer(r->sampler, ctx_.get(), row, model_->n_vocab(), token, &r->walk_logits, deferred);
    if (!st.ok() || !*deferred) return st;
    r->walking = true;
    {
        std::lock_guard<std::mutex> lock(walk_mutex_);
        walk_queue_.push_back(r);
        if (!walker_.joinable()) walker_ = std::thread([this] { walker_run(); });
    }
    walk_cv_.notify_one();
    return st;
}

void Engine::walker_run() {
    while (true) {
        Request* r = nullptr;
        {
            std::unique_lock<std::mutex> lock(walk_mutex_);
            walk_cv_.wait(lock, [&] { return walk_stop_ || !walk_queue_.empty(); });
            if (walk_queue_.empty()) return;  // stopping, nothing left
            r = walk_queue_.front();
            walk_queue_.pop_front();
        }
        Walked done{r->id, Status::Ok(), -1};
        // r stays alive and its sampler untouched by the decode thread while r->walking is set
        done.status = sample_walk(r->sampler, r->walk_logits, &done.token);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            walked_.push_back(std::move(done));
        }
        cv_.notify_all();
    }
}

void Engine::stop_walker() {
    {
        std::lock_guard<std::mutex> lock(walk_mutex_);
        walk_stop_ = true;
    }
    walk_cv_.notify_all();
    if (walker_.joinable()) walker_.join();  // each walk is bounded (2 s): the queue drains
    collect_walks();
}

void Engine::collect_walks() {
    std::vector<Walked> done;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        done.swap(walked_);
    }
    for (auto& w : done) {
        for (auto& s : slots_) {
            Request* r = s.req;
            if (!r || r->id != w.id) continue;
            r->walking = false;  // walk_logits keeps its buffer for the request's next walk
            if (!w.status.ok()) {
                fail(s, w.status);
            } else if (r->abort_when_walked) {
                finish(s, static_cast<Finish>(kFinishAbort));
            } else {
                emit_token(s, w.token, -1);  // n_probs < 0 here: the row is not read
            }
            break;
        }
    }
}

bool Engine::emit_token(Slot& s, llama_token token, int32_t row) {
    Request* r = s.req;
    r->n_generated++;
    step_counts_.generated_tokens++;
    Event ev;
    ev.id = r->id;
    ev.kind = EventKind::Token;
    ev.token = token;
    if (r->sampler.n_probs >= 0) {  // from this row's logits, while they are still there
        TokenProbs probs;
        token_probs(ctx_.get(), row, model_->n_vocab(), token, r->sampler.n_probs, &probs);
        ev.has_logprob = true;
        ev.logprob = probs.logprob;
        ev.top_logprobs.assign(probs.top.begin(), probs.top.end());
    }
    Finish reason = Finish::Running;
    const auto& gen = r->spec.gen;
    if (!gen.ignore_eos && llama_vocab_is_eog(model_->vocab(), token)) {
        reason = Finish::Stop;
        ev.text = r->stream.finish();
    } else {
        ev.text = r->stream.push(model_->token_to_piece(token, false));
        if (r->stream.stopped()) {
            reason = Finish::Stop;
        } else if ((gen.max_tokens >= 0 && r->n_generated >= gen.max_tokens) || s.tokens.size() + 1 >= n_ctx_seq_) {
            reason = Finish::Length;
            ev.text += r->stream.finish();
        }
    }
    out_events_.push_back(std::move(ev));
    if (reason != Finish::Running) {
        finish(s, reason);
        return true;
    }
    r->pending = token;
    return false;
}

void Engine::finish(Slot& s, Finish reason) {
    Request* r = s.req;
    Event ev;
    ev.id = r->id;
    ev.kind = EventKind::Done;
    ev.finish = static_cast<int32_t>(reason);
    ev.text = r->stream.matched_stop();  // the stop string that ended it (not in the output), if one did
    ev.n_prompt = static_cast<int32_t>(r->spec.prompt.size());
    ev.n_cached = r->n_cached;
    ev.n_generated = r->n_generated;
    ev.n_drafted = r->n_drafted;
    ev.n_accepted = r->n_accepted;
    out_events_.push_back(std::move(ev));
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (static_cast<int32_t>(reason) == kFinishAbort) {
            stats_.aborted++;
        } else {
            stats_.finished++;
        }
    }
    release(s);
}

void Engine::fail(Slot& s, const Status& st) {
    Event ev;
    ev.id = s.req->id;
    ev.kind = EventKind::Error;
    ev.error_code = static_cast<int32_t>(st.code);
    ev.error = st.msg;
    out_events_.push_back(std::move(ev));
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.failed++;
    }
    // what the cache holds for this slot is no longer known to match s.tokens
    llama_memory_seq_rm(llama_get_memory(ctx_.get()), s.seq, -1, -1);
    s.tokens.clear();
    if (drafter_) drafter_->forget(s.seq);
    release(s);
}

void Engine::release(Slot& s) {
    // The slot keeps its tokens (prompt + generated, all in the cache) as a reusable prefix.
    const uint64_t id = s.req->id;
    s.req = nullptr;
    s.owned.reset();
    s.last_used = ++clock_;
    std::lock_guard<std::mutex> lock(mutex_);
    live_.erase(id);
}

}  // namespace dmr
