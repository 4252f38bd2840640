// TextStream: token pieces in, text that is safe to show out.
//
// Holds back (a) an incomplete UTF-8 sequence at the end (a token may carry half a character) and
// (b) any tail that could still become a stop string, which may span several tokens. When a stop string
// appears, the text before it is emitted and the stream reports it stopped; the stop string itself is
// never emitted (OpenAI semantics).
#pragma once
#include <string>
#include <vector>

namespace dmr {

class TextStream {
public:
    explicit TextStream(std::vector<std::string> stops = {}) : stops_(std::move(stops)) {}

    // Appends a piece; returns what may be shown now. After a stop, further pushes return "".
    std::string push(const std::string& piece);
    // End of generation: everything still held back (an incomplete character is dropped).
    std::string finish();
    bool stopped() const { return stopped_; }
    const std::string& matched_stop() const { return matched_; }

private:
    std::vector<std::string> stops_;
    std::string pending_;
    bool stopped_ = false;
    std::string matched_;
};

// Length of the longest prefix of `s` that ends on a complete UTF-8 character.
size_t utf8_complete_prefix(const std::string& s);

}  // namespace dmr
