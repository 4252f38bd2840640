// GGUF metadata without loading tensors, through ggml's own gguf_* reader (no_alloc).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "status.h"

namespace dmr {

// One key/value of the header. Scalars land in i/f/s; arrays keep their length, and their values only
// when short (the 49k-entry vocabulary of a tokenizer is of no use to metadata readers).
struct GgufKV {
    std::string key;
    int type = 0;            // gguf_type
    int64_t i = 0;           // integer and bool values
    double f = 0.0;          // float values
    std::string s;           // string values
    int arr_type = -1;       // element gguf_type for arrays
    int64_t arr_len = 0;
    std::vector<std::string> arr_str;   // kept when arr_len <= kMaxArrayKept
    std::vector<double> arr_num;
};

struct GgufInfo {
    uint32_t version = 0;
    uint64_t file_size = 0;
    uint64_t data_offset = 0;
    int64_t n_tensors = 0;
    uint64_t n_params = 0;      // sum of tensor element counts
    uint64_t tensor_bytes = 0;  // sum of tensor data sizes
    std::vector<GgufKV> kvs;
    std::vector<std::pair<std::string, int64_t>> tensor_types;  // ggml type name -> tensor count
};

constexpr int64_t kMaxArrayKept = 64;

// Checks that `path` is a readable regular file that starts with the GGUF magic.
Status gguf_check_file(const std::string& path, uint64_t* file_size);

// Reads the header and tensor table; verifies that every tensor's data lies inside the file, so a
// truncated download is reported here instead of faulting later through mmap.
Status gguf_read_info(const std::string& path, GgufInfo* out);

}  // namespace dmr
