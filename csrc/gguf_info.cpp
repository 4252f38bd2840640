#include "gguf_info.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "ggml.h"
#include "gguf.h"
#include "log_sink.h"

namespace dmr {
namespace {

double arr_num_at(const gguf_context* ctx, int64_t id, int type, size_t i) {
    const void* data = gguf_get_arr_data(ctx, id);
    switch (type) {
        case GGUF_TYPE_UINT8: return static_cast<const uint8_t*>(data)[i];
        case GGUF_TYPE_INT8: return static_cast<const int8_t*>(data)[i];
        case GGUF_TYPE_UINT16: return static_cast<const uint16_t*>(data)[i];
        case GGUF_TYPE_INT16: return static_cast<const int16_t*>(data)[i];
        case GGUF_TYPE_UINT32: return static_cast<const uint32_t*>(data)[i];
        case GGUF_TYPE_INT32: return static_cast<const int32_t*>(data)[i];
        case GGUF_TYPE_FLOAT32: return static_cast<const float*>(data)[i];
        case GGUF_TYPE_BOOL: return static_cast<const int8_t*>(data)[i] != 0;
        case GGUF_TYPE_UINT64: return static_cast<double>(static_cast<const uint64_t*>(data)[i]);
        case GGUF_TYPE_INT64: return static_cast<double>(static_cast<const int64_t*>(data)[i]);
        case GGUF_TYPE_FLOAT64: return static_cast<const double*>(data)[i];
        default: return 0.0;
    }
}

void read_kv(const gguf_context* ctx, int64_t id, GgufKV* kv) {
    kv->key = gguf_get_key(ctx, id);
    kv->type = gguf_get_kv_type(ctx, id);
    switch (kv->type) {
        case GGUF_TYPE_UINT8: kv->i = gguf_get_val_u8(ctx, id); break;
        case GGUF_TYPE_INT8: kv->i = gguf_get_val_i8(ctx, id); break;
        case GGUF_TYPE_UINT16: kv->i = gguf_get_val_u16(ctx, id); break;
        case GGUF_TYPE_INT16: kv->i = gguf_get_val_i16(ctx, id); break;
        case GGUF_TYPE_UINT32: kv->i = gguf_get_val_u32(ctx, id); break;
        case GGUF_TYPE_INT32: kv->i = gguf_get_val_i32(ctx, id); break;
        case GGUF_TYPE_UINT64: kv->i = static_cast<int64_t>(gguf_get_val_u64(ctx, id)); break;
        case GGUF_TYPE_INT64: kv->i = gguf_get_val_i64(ctx, id); break;
        case GGUF_TYPE_BOOL: kv->i = gguf_get_val_bool(ctx, id) ? 1 : 0; break;
        case GGUF_TYPE_FLOAT32: kv->f = gguf_get_val_f32(ctx, id); break;
        case GGUF_TYPE_FLOAT64: kv->f = gguf_get_val_f64(ctx, id); break;
        case GGUF_TYPE_STRING: kv->s = gguf_get_val_str(ctx, id); break;
        case GGUF_TYPE_ARRAY: {
            kv->arr_type = gguf_get_arr_type(ctx, id);
            kv->arr_len = static_cast<int64_t>(gguf_get_arr_n(ctx, id));
            if (kv->arr_len > kMaxArrayKept || kv->arr_type == GGUF_TYPE_ARRAY) break;
            for (int64_t j = 0; j < kv->arr_len; ++j) {
                if (kv->arr_type == GGUF_TYPE_STRING) {
                    kv->arr_str.emplace_back(gguf_get_arr_str(ctx, id, j));
                } else {
                    kv->arr_num.push_back(arr_num_at(ctx, id, kv->arr_type, j));
                }
            }
            break;
        }
        default: break;
    }
}

std::string first_line_or(const std::string& text, const char* fallback) {
    if (text.empty()) return fallback;
    auto end = text.find('\n');
    return text.substr(0, end);
}

}  // namespace

Status gguf_check_file(const std::string& path, uint64_t* file_size) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return Status::Error(Code::NotFound, "model file not found: " + path);
        return Status::Error(Code::NotGguf, "cannot read " + path + ": " + std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return Status::Error(Code::NotGguf, path + " is a directory, not a GGUF file");
    if (!S_ISREG(st.st_mode)) return Status::Error(Code::NotGguf, path + " is not a regular file");
    if (file_size) *file_size = static_cast<uint64_t>(st.st_size);
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return Status::Error(Code::NotGguf, "cannot open " + path + ": " + std::strerror(errno));
    char magic[4] = {0, 0, 0, 0};
    size_t n = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (n < 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        return Status::Error(Code::NotGguf, path + " is not a GGUF file (bad magic)");
    }
    return Status::Ok();
}

Status gguf_read_info(const std::string& path, GgufInfo* out) {
    Status st = gguf_check_file(path, &out->file_size);
    if (!st.ok()) return st;

    log_capture_begin();
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    gguf_context* ctx = gguf_init_from_file(path.c_str(), params);
    if (!ctx) {
        return Status::Error(Code::CorruptModel,
                             "corrupt or truncated GGUF header in " + path + ": " +
                                 first_line_or(log_capture_text(), "gguf reader failed"));
    }
    out->version = gguf_get_version(ctx);
    out->data_offset = gguf_get_data_offset(ctx);
    out->n_tensors = gguf_get_n_tensors(ctx);
    const int64_t n_kv = gguf_get_n_kv(ctx);
    out->kvs.resize(static_cast<size_t>(n_kv));
    for (int64_t i = 0; i < n_kv; ++i) read_kv(ctx, i, &out->kvs[static_cast<size_t>(i)]);

    std::map<std::string, int64_t> types;
    uint64_t data_end = out->data_offset;
    for (int64_t t = 0; t < out->n_tensors; ++t) {
        const int64_t* ne = gguf_get_tensor_ne(ctx, t);
        uint64_t n = 1;
        for (int d = 0; d < GGML_MAX_DIMS; ++d) n *= static_cast<uint64_t>(ne[d]);
        out->n_params += n;
        const uint64_t size = gguf_get_tensor_size(ctx, t);
        out->tensor_bytes += size;
        const uint64_t end = out->data_offset + gguf_get_tensor_offset(ctx, t) + size;
        if (end > data_end) data_end = end;
        types[ggml_type_name(gguf_get_tensor_type(ctx, t))] += 1;
    }
    gguf_free(ctx);
    out->tensor_types.assign(types.begin(), types.end());
    if (data_end > out->file_size) {
        return Status::Error(Code::CorruptModel,
                             "truncated GGUF " + path + ": tensor data needs " + std::to_string(data_end) +
                                 " bytes but the file has " + std::to_string(out->file_size));
    }
    return Status::Ok();
}

}  // namespace dmr
