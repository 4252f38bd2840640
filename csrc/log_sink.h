// LogSink: llama.cpp / ggml log lines are collected here instead of going to stderr.
//
// Python never gets called from a llama.cpp thread (the decode thread must not take the GIL): lines are
// queued under a mutex and the binding drains them into Python logging after each call it makes.
// Each thread also keeps the error lines it produced since the last capture_begin(), so that a failed
// load can say *why* (llama.cpp's public API only returns NULL).
#pragma once
#include <string>
#include <vector>

namespace dmr {

struct LogLine {
    int level;  // ggml_log_level: 1 debug, 2 info, 3 warn, 4 error
    std::string text;
};

void log_line(int level, const std::string& text);  // a line of dmr's own, same queue as llama.cpp's
void log_install();                      // route llama.cpp/ggml logging to the sink (idempotent)
void log_set_min_level(int level);       // lines below this level are dropped at the source
std::vector<LogLine> log_drain();        // take every queued line (thread-safe)
void log_capture_begin();                // start remembering this thread's warn/error lines
std::string log_capture_text();          // this thread's warn/error lines since capture_begin

}  // namespace dmr
