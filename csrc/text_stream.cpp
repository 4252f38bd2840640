#include "text_stream.h"

#include <algorithm>

namespace dmr {

size_t utf8_complete_prefix(const std::string& s) {
    // Look back at most 3 bytes for the lead byte of a multi-byte sequence that is not finished yet.
    const size_t n = s.size();
    for (size_t back = 1; back <= 4 && back <= n; ++back) {
        const unsigned char c = static_cast<unsigned char>(s[n - back]);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
        size_t need = 1;
        if ((c & 0xE0) == 0xC0) need = 2;
        else if ((c & 0xF0) == 0xE0) need = 3;
        else if ((c & 0xF8) == 0xF0) need = 4;
        return back < need ? n - back : n;
    }
    return n;
}

std::string TextStream::push(const std::string& piece) {
    if (stopped_) return {};
    pending_ += piece;

    size_t cut = std::string::npos;
    for (const auto& stop : stops_) {
        if (stop.empty()) continue;
        size_t at = pending_.find(stop);
        if (at != std::string::npos && at < cut) {
            cut = at;
            matched_ = stop;
        }
    }
    if (cut != std::string::npos) {
        stopped_ = true;
        std::string out = pending_.substr(0, cut);
        pending_.clear();
        return out;
    }

    // Hold back the longest tail that is a proper prefix of some stop string.
    size_t hold = 0;
    for (const auto& stop : stops_) {
        const size_t max_len = std::min(stop.size() - (stop.empty() ? 0 : 1), pending_.size());
        for (size_t len = max_len; len > hold; --len) {
            if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
                hold = len;
                break;
            }
        }
    }
    size_t emit = std::min(pending_.size() - hold, utf8_complete_prefix(pending_));
    std::string out = pending_.substr(0, emit);
    pending_.erase(0, emit);
    return out;
}

std::string TextStream::finish() {
    if (stopped_) return {};
    std::string out = pending_.substr(0, utf8_complete_prefix(pending_));
    pending_.clear();
    return out;
}

}  // namespace dmr
