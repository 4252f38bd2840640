// EventQueue: the decode thread's only way to talk to Python.
//
// Many producers (in practice the one decode thread), one consumer (the asyncio loop). Data rides in the
// queue; the wakeup fd only says "there is something": it is written when the queue goes from empty to
// non-empty, so a burst of tokens costs one syscall and one loop wakeup (uvloop's async handle pattern).
// The consumer drains everything at once. Nothing here ever blocks on the consumer.
#pragma once
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace dmr {

enum class EventKind : int32_t { Token = 0, Done = 1, Error = 2 };

struct Event {
    uint64_t id = 0;
    EventKind kind = EventKind::Token;
    int32_t token = -1;
    std::string text;
    int32_t finish = 0;        // Finish code on Done
    int32_t n_prompt = 0;      // usage, on Done
    int32_t n_cached = 0;
    int32_t n_generated = 0;
    int32_t n_drafted = 0;     // speculative decoding, on Done
    int32_t n_accepted = 0;
    int32_t error_code = 0;    // Status code, on Error
    std::string error;
    // On Token, when the request asked for log-probabilities (SamplingParams::n_probs >= 0): the token's
    // log-probability under the model's raw distribution, and the n_probs most likely tokens with theirs.
    bool has_logprob = false;
    float logprob = 0.0f;
    std::vector<std::pair<int32_t, float>> top_logprobs;
};

class EventQueue {
public:
    EventQueue();
    ~EventQueue();
    EventQueue(const EventQueue&) = delete;
    EventQueue& operator=(const EventQueue&) = delete;

    int fd() const { return read_fd_; }
    void push(Event&& ev);
    void push_many(std::vector<Event>& evs);
    // Takes every queued event and clears the wakeup fd.
    void drain(std::vector<Event>* out);
    size_t size() const;

private:
    void signal();
    mutable std::mutex mutex_;
    std::deque<Event> queue_;
    int read_fd_ = -1;
    int write_fd_ = -1;   // == read_fd_ for eventfd
};

}  // namespace dmr
