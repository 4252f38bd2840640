// Model: a loaded llama_model plus its vocabulary. Immutable after load, so it is safe to share between
// threads and contexts (llama.cpp's model is read-only once loaded).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llama.h"
#include "status.h"

namespace dmr {

struct ModelParams {
    int32_t n_gpu_layers = 0;   // -1: all
    bool use_mmap = true;
    bool use_mlock = false;
    // Repacked weight layouts (llama.cpp's "extra buffer types") are faster but use different kernels for
    // one row and for many, so results may depend on how many rows a batch has.
    bool repack = true;
    // Called from the loading thread (the caller's) with progress in [0, 1]; returning false cancels.
    bool (*progress)(float progress, void* user) = nullptr;
    void* progress_user = nullptr;
};

class Model {
public:
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    // Validates the file (exists, GGUF magic, complete tensor data) before handing it to llama.cpp,
    // and classifies llama.cpp's failures from the log lines it printed while loading.
    static Status load(const std::string& path, const ModelParams& params, std::unique_ptr<Model>* out);

    llama_model* get() const { return model_; }
    const llama_vocab* vocab() const { return vocab_; }
    const std::string& path() const { return path_; }

    // text -> tokens. add_special: BOS/EOS as the model wants; parse_special: "<|im_start|>" -> one token.
    Status tokenize(const std::string& text, bool add_special, bool parse_special,
                    std::vector<llama_token>* out) const;
    // tokens -> text. remove_special drops BOS/EOS the model adds; unparse_special renders control tokens.
    Status detokenize(const std::vector<llama_token>& tokens, bool remove_special, bool unparse_special,
                      std::string* out) const;
    // One token's bytes (may be an incomplete UTF-8 sequence).
    std::string token_to_piece(llama_token token, bool special) const;
    bool valid_token(llama_token t) const { return t >= 0 && t < n_vocab_; }
    int32_t n_vocab() const { return n_vocab_; }

private:
    Model() = default;
    llama_model* model_ = nullptr;
    const llama_vocab* vocab_ = nullptr;
    int32_t n_vocab_ = 0;
    std::string path_;
};

// llama_backend_init once per process, and the log sink.
void backend_init();

}  // namespace dmr
