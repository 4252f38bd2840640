#include "cpu_matmul.h"

#include <cstring>
#include <string>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"

#ifndef GGML_BACKEND_DL
// defined by csrc/kernels/q4_1_gemm.cpp inside the ggml-cpu library, when cmake/DmrKernels.cmake attached it
extern "C" int dmr_q4_1_gemm_available(void) __attribute__((weak));
extern "C" int dmr_q4_1_gemm_active(void) __attribute__((weak));
#elif defined(__linux__)
#include <dlfcn.h>
#include <link.h>
#endif

namespace {

using KernelQuery = int (*)(void);

struct KernelQueries {
    KernelQuery available = nullptr;
    KernelQuery active = nullptr;
};

KernelQueries find_kernel_queries() {
    KernelQueries q;
#ifndef GGML_BACKEND_DL
    q.available = dmr_q4_1_gemm_available;
    q.active = dmr_q4_1_gemm_active;
#elif defined(__linux__)
    // A portable build's CPU backend is the variant library ggml loaded at run time (libggml-cpu-<variant>.so,
    // RTLD_LOCAL): find it among the loaded objects and ask it.
    std::string path;
    dl_iterate_phdr(
        [](dl_phdr_info * info, size_t, void * data) -> int {
            const char * name = info->dlpi_name;
            if (name != nullptr && std::strstr(name, "libggml-cpu") != nullptr) {
                *static_cast<std::string *>(data) = name;
                return 1;
            }
            return 0;
        },
        &path);
    if (!path.empty()) {
        void * handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
        if (handle != nullptr) {
            q.available = reinterpret_cast<KernelQuery>(dlsym(handle, "dmr_q4_1_gemm_available"));
            q.active = reinterpret_cast<KernelQuery>(dlsym(handle, "dmr_q4_1_gemm_active"));
            dlclose(handle);  // drops only the reference taken here; ggml keeps the library loaded
        }
    }
#endif
    return q;
}

}  // namespace

namespace dmr {

Status cpu_mul_mat(int weight_type, const void * weights, size_t weights_size, int64_t rows, int64_t k,
                   const float * activations, int64_t n, int n_threads, float * out) {
    const auto type = static_cast<ggml_type>(weight_type);
    if (weight_type < 0 || weight_type >= GGML_TYPE_COUNT || ggml_get_type_traits(type)->blck_size == 0) {
        return {Code::InvalidInput, "unknown ggml type " + std::to_string(weight_type)};
    }
    if (rows <= 0 || n <= 0 || k <= 0 || k % ggml_blck_size(type) != 0) {
        return {Code::InvalidInput, "k must be a positive multiple of the type's block size"};
    }
    const size_t weight_bytes = ggml_row_size(type, k) * rows;
    if (weights_size != weight_bytes) {
        return {Code::InvalidInput, std::to_string(rows) + " rows of " + std::to_string(k) + " elements of " +
                                        ggml_type_name(type) + " take " + std::to_string(weight_bytes) +
                                        " bytes, not " + std::to_string(weights_size)};
    }
    // Through the backend API rather than ggml-cpu.h: a portable build loads its CPU backend as a library
    // at run time, and this module cannot link against that library's functions.
    ggml_backend_t backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (backend == nullptr) {
        return {Code::Fatal, "ggml has no CPU backend"};
    }
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(ggml_backend_get_device(backend));
    auto set_threads = reinterpret_cast<ggml_backend_set_n_threads_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads"));
    if (set_threads != nullptr) {
        set_threads(backend, n_threads);
    }
    ggml_init_params params{};
    params.mem_size = 8 * ggml_tensor_overhead() + ggml_graph_overhead();
    params.no_alloc = true;  // the tensors live in a backend buffer
    ggml_context * ctx = ggml_init(params);
    ggml_tensor * a = ggml_new_tensor_2d(ctx, type, k, rows);
    ggml_tensor * b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
    ggml_tensor * c = ggml_mul_mat(ctx, a, b);
    ggml_cgraph * graph = ggml_new_graph(ctx);
    ggml_build_forward_expand(graph, c);
    Status result;
    ggml_backend_buffer_t buffer = nullptr;
    const bool weight_type_ok = ggml_is_quantized(type) || type == GGML_TYPE_F32 || type == GGML_TYPE_F16 ||
                                type == GGML_TYPE_BF16;  // integer types pass supports_op, then abort
    if (!weight_type_ok || !ggml_backend_supports_op(backend, c)) {
        result = {Code::InvalidInput, std::string("ggml's CPU backend cannot multiply ") + ggml_type_name(type)};
    } else if ((buffer = ggml_backend_alloc_ctx_tensors(ctx, backend)) == nullptr) {
        result = {Code::OutOfMemory, "could not allocate the product's tensors"};
    } else {
        ggml_backend_tensor_set(a, weights, 0, weight_bytes);
        ggml_backend_tensor_set(b, activations, 0, size_t(n * k) * sizeof(float));
        const ggml_status status = ggml_backend_graph_compute(backend, graph);
        if (status == GGML_STATUS_SUCCESS) {
            ggml_backend_tensor_get(c, out, 0, size_t(n * rows) * sizeof(float));
        } else {
            result = {Code::Fatal, "ggml_backend_graph_compute failed: " + std::to_string(int(status))};
        }
    }
    if (buffer != nullptr) {
        ggml_backend_buffer_free(buffer);
    }
    ggml_free(ctx);
    ggml_backend_free(backend);
    return result;
}

KernelState q4_1_kernel_state() {
    const KernelQueries q = find_kernel_queries();
    if (q.available == nullptr || q.active == nullptr) {
#if defined(GGML_BACKEND_DL) && !defined(__linux__)
        return KernelState::Unknown;
#else
        return KernelState::Absent;  // not attached (DMR_KERNELS=OFF), or no CPU backend library loaded
#endif
    }
    if (q.available() == 0) {
        return KernelState::Absent;
    }
    return q.active() != 0 ? KernelState::Active : KernelState::Off;
}

}  // namespace dmr
