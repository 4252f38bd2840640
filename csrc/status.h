// Status: how every csrc function reports failure. No C++ exception ever crosses the csrc API; the
// Cython layer turns a non-Ok Status into a dmr.errors class in exactly one place (pyx/status.pxi).
#pragma once
#include <string>
#include <utility>

namespace dmr {

enum class Code : int {
    Ok = 0,
    InvalidInput = 1,    // bad parameters: grammar that does not parse, token out of range ...
    NotFound = 2,        // path does not exist
    NotGguf = 3,         // exists but is not a GGUF file (directory, other format)
    CorruptModel = 4,    // a GGUF that is truncated or inconsistent
    Unsupported = 5,     // valid GGUF, architecture unknown to this llama.cpp
    ContextFull = 6,     // prompt does not fit into the context window
    Aborted = 7,         // cancelled by the caller
    OutOfMemory = 8,     // a ggml buffer could not be allocated
    Fatal = 9,           // anything else llama.cpp reports
};

struct Status {
    Code code = Code::Ok;
    std::string msg;

    bool ok() const { return code == Code::Ok; }
    static Status Ok() { return {}; }
    static Status Error(Code c, std::string m) { return Status{c, std::move(m)}; }
};

}  // namespace dmr
