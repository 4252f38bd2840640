#include "model.h"

#include <mutex>

#include "gguf_info.h"
#include "log_sink.h"

namespace dmr {

void backend_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        log_install();
        llama_backend_init();
    });
}

Model::~Model() {
    if (model_) llama_model_free(model_);
}

namespace {

struct ProgressShim {
    const ModelParams* params;
    bool cancelled = false;
};

bool progress_shim(float progress, void* user) {
    auto* shim = static_cast<ProgressShim*>(user);
    if (!shim->params->progress) return true;
    bool keep_going = shim->params->progress(progress, shim->params->progress_user);
    if (!keep_going) shim->cancelled = true;
    return keep_going;
}

bool contains(const std::string& haystack, const char* needle) { return haystack.find(needle) != std::string::npos; }

// llama_model_load_from_file only returns NULL; what went wrong is in the lines it logged.
Status classify_load_failure(const std::string& path, const std::string& log) {
    std::string detail;
    for (size_t start = 0; start < log.size();) {
        size_t end = log.find('\n', start);
        if (end == std::string::npos) end = log.size();
        std::string line = log.substr(start, end - start);
        if (!line.empty() && (contains(line, "error") || contains(line, "failed") || contains(line, "unknown"))) {
            detail = line;  // the most specific reason is usually the first such line
            break;
        }
        start = end + 1;
    }
    if (detail.empty()) detail = "llama.cpp could not load the model";
    if (contains(log, "unknown model architecture") || contains(log, "unsupported model architecture")) {
        return Status::Error(Code::Unsupported, "unsupported model architecture in " + path + ": " + detail);
    }
    if (contains(log, "failed to allocate") || contains(log, "unable to allocate") || contains(log, "out of memory") ||
        contains(log, "cannot allocate") || contains(log, "failed to create backend buffer")) {
        return Status::Error(Code::OutOfMemory, "not enough memory to load " + path + ": " + detail);
    }
    return Status::Error(Code::CorruptModel, "cannot load " + path + ": " + detail);
}

// True when the CPU backend in use runs ggml's AMX kernels (the portable build's Sapphire Rapids variant).
// Those kernels crash where Linux disables AMX tile data per thread (ggml-org/llama.cpp#26954, open for the
// pinned llama.cpp), and they only run on weights placed in the AMX extra buffer type: without extra buffer
// types the same CPU runs its AVX-512 kernels. The native build is compiled without AMX instead (CMakeLists).
bool amx_kernels_active() {
    static const bool active = std::string(llama_print_system_info()).find("AMX_INT8 = 1") != std::string::npos;
    return active;
}

// Header values llama.cpp asserts on instead of refusing: a GGUF declaring zero layers (block_count = 0)
// aborted the process inside the model loader. Checked here so such a file is a CorruptModel error.
Status check_hparams(const std::string& path, const GgufInfo& info) {
    std::string arch;
    for (const auto& kv : info.kvs) {
        if (kv.key == "general.architecture") arch = kv.s;
    }
    if (arch.empty()) return Status::Ok();  // llama.cpp refuses it itself, with a message
    for (const char* name : {"block_count", "embedding_length"}) {
        const std::string key = arch + "." + name;
        for (const auto& kv : info.kvs) {
            if (kv.key == key && kv.arr_len == 0 && kv.s.empty() && kv.i <= 0 && kv.f <= 0.0) {
                return Status::Error(Code::CorruptModel, "corrupt GGUF " + path + ": " + key + " is " +
                                                             std::to_string(kv.i) + " (must be at least 1)");
            }
        }
    }
    return Status::Ok();
}

}  // namespace

Status Model::load(const std::string& path, const ModelParams& params, std::unique_ptr<Model>* out) {
    backend_init();
    GgufInfo info;
    Status st = gguf_read_info(path, &info);
    if (!st.ok()) return st;
    st = check_hparams(path, info);
    if (!st.ok()) return st;

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = params.n_gpu_layers;
    if (params.use_mmap) {
        mp.load_mode = params.use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP;
    } else {
        mp.load_mode = params.use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE;
    }
    mp.use_extra_bufts = params.repack && !amx_kernels_active();
    ProgressShim shim{&params};
    mp.progress_callback = progress_shim;
    mp.progress_callback_user_data = &shim;

    log_capture_begin();
    llama_model* m = llama_model_load_from_file(path.c_str(), mp);
    if (!m) {
        if (shim.cancelled) return Status::Error(Code::Aborted, "loading " + path + " was cancelled");
        return classify_load_failure(path, log_capture_text());
    }
    std::unique_ptr<Model> model(new Model());
    model->model_ = m;
    model->vocab_ = llama_model_get_vocab(m);
    model->n_vocab_ = llama_vocab_n_tokens(model->vocab_);
    model->path_ = path;
    *out = std::move(model);
    return Status::Ok();
}

Status Model::tokenize(const std::string& text, bool add_special, bool parse_special,
                       std::vector<llama_token>* out) const {
    // upper bound: one token per byte plus BOS/EOS; retried with the exact size llama.cpp asks for
    out->resize(text.size() + 2);
    int32_t n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), out->data(),
                               static_cast<int32_t>(out->size()), add_special, parse_special);
    if (n < 0) {
        if (n == INT32_MIN) return Status::Error(Code::InvalidInput, "text too long to tokenize");
        out->resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), out->data(),
                           static_cast<int32_t>(out->size()), add_special, parse_special);
        if (n < 0) return Status::Error(Code::Fatal, "tokenization failed");
    }
    out->resize(static_cast<size_t>(n));
    return Status::Ok();
}

Status Model::detokenize(const std::vector<llama_token>& tokens, bool remove_special, bool unparse_special,
                         std::string* out) const {
    for (llama_token t : tokens) {
        if (!valid_token(t)) {
            return Status::Error(Code::InvalidInput, "token id " + std::to_string(t) + " is outside the vocabulary (0.." +
                                                         std::to_string(n_vocab_ - 1) + ")");
        }
    }
    out->resize(tokens.size() * 8 + 16);
    int32_t n = llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()), out->data(),
                                 static_cast<int32_t>(out->size()), remove_special, unparse_special);
    if (n < 0) {
        out->resize(static_cast<size_t>(-n));
        n = llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()), out->data(),
                             static_cast<int32_t>(out->size()), remove_special, unparse_special);
        if (n < 0) return Status::Error(Code::Fatal, "detokenization failed");
    }
    out->resize(static_cast<size_t>(n));
    return Status::Ok();
}

std::string Model::token_to_piece(llama_token token, bool special) const {
    char buf[256];
    int32_t n = llama_token_to_piece(vocab_, token, buf, sizeof(buf), 0, special);
    if (n >= 0) return std::string(buf, static_cast<size_t>(n));
    std::string big(static_cast<size_t>(-n), '\0');
    n = llama_token_to_piece(vocab_, token, big.data(), static_cast<int32_t>(big.size()), 0, special);
    big.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return big;
}

}  // namespace dmr
