#include "log_sink.h"

#include <atomic>
#include <deque>
#include <mutex>

#include "ggml.h"
#include "llama.h"

namespace dmr {
namespace {

constexpr size_t kMaxQueued = 4096;  // a runaway logger must not grow memory without bound

std::mutex g_mutex;
std::deque<LogLine> g_queue;
std::atomic<int> g_min_level{GGML_LOG_LEVEL_WARN};

thread_local std::string t_partial;   // llama.cpp emits lines in pieces (GGML_LOG_LEVEL_CONT)
thread_local int t_partial_level = GGML_LOG_LEVEL_INFO;
thread_local bool t_capturing = false;
thread_local std::string t_captured;

void push_line(int level, std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.empty()) return;
    if (t_capturing && level >= GGML_LOG_LEVEL_WARN) {
        if (t_captured.size() < 16384) {
            t_captured += text;
            t_captured += '\n';
        }
    }
    if (level < g_min_level.load(std::memory_order_relaxed)) return;
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_queue.size() >= kMaxQueued) g_queue.pop_front();
    g_queue.push_back(LogLine{level, std::move(text)});
}

}  // namespace

void log_line(int level, const std::string& text) { push_line(level, text); }

namespace {

void on_log(ggml_log_level level, const char* text, void* /*user*/) {
    if (text == nullptr) return;
    int lvl = static_cast<int>(level);
    if (lvl != GGML_LOG_LEVEL_CONT) {
        if (!t_partial.empty()) push_line(t_partial_level, std::move(t_partial));
        t_partial.clear();
        t_partial_level = lvl == GGML_LOG_LEVEL_NONE ? GGML_LOG_LEVEL_INFO : lvl;
    }
    t_partial += text;
    // flush every complete line; keep the unfinished tail for the next piece
    size_t pos;
    while ((pos = t_partial.find('\n')) != std::string::npos) {
        push_line(t_partial_level, t_partial.substr(0, pos));
        t_partial.erase(0, pos + 1);
    }
}

}  // namespace

void log_install() {
    llama_log_set(on_log, nullptr);
    ggml_log_set(on_log, nullptr);
}

void log_set_min_level(int level) { g_min_level.store(level, std::memory_order_relaxed); }

std::vector<LogLine> log_drain() {
    std::lock_guard<std::mutex> lock(g_mutex);
    std::vector<LogLine> out(std::make_move_iterator(g_queue.begin()), std::make_move_iterator(g_queue.end()));
    g_queue.clear();
    return out;
}

void log_capture_begin() {
    t_capturing = true;
    t_captured.clear();
}

std::string log_capture_text() {
    if (!t_partial.empty()) {
        push_line(t_partial_level, std::move(t_partial));
        t_partial.clear();
    }
    return t_captured;
}

}  // namespace dmr
