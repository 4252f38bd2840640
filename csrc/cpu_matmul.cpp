#include "cpu_matmul.h"

#include <cstring>
#include <string>

#include "ggml-cpu.h"
#include "ggml.h"

#ifndef GGML_BACKEND_DL
// defined by csrc/kernels/q4_1_gemm.cpp inside the ggml-cpu library, when cmake/DmrKernels.cmake attached it
extern "C" int dmr_q4_1_gemm_available(void) __attribute__((weak));
extern "C" int dmr_q4_1_gemm_active(void) __attribute__((weak));
#endif

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
    ggml_init_params params{};
    // tensors, the graph and ggml's work buffer for the product (activations quantized, output)
    params.mem_size = weight_bytes + size_t(n * k + n * rows) * sizeof(float) * 2 + ggml_graph_overhead() +
                      16 * ggml_tensor_overhead() + (size_t(1) << 20);
    ggml_context * ctx = ggml_init(params);
    if (ctx == nullptr) {
        return {Code::OutOfMemory, "ggml_init failed"};
    }
    ggml_tensor * a = ggml_new_tensor_2d(ctx, type, k, rows);
    ggml_tensor * b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
    std::memcpy(a->data, weights, weight_bytes);
    std::memcpy(b->data, activations, size_t(n * k) * sizeof(float));
    ggml_tensor * c = ggml_mul_mat(ctx, a, b);
    ggml_cgraph * graph = ggml_new_graph(ctx);
    ggml_build_forward_expand(graph, c);
    const ggml_status status = ggml_graph_compute_with_ctx(ctx, graph, n_threads);
    if (status == GGML_STATUS_SUCCESS) {
        std::memcpy(out, c->data, size_t(n * rows) * sizeof(float));
    }
    ggml_free(ctx);
    if (status != GGML_STATUS_SUCCESS) {
        return {Code::Fatal, "ggml_graph_compute failed: " + std::to_string(int(status))};
    }
    return {};
}

KernelState q4_1_kernel_state() {
#ifndef GGML_BACKEND_DL
    if (dmr_q4_1_gemm_available == nullptr || dmr_q4_1_gemm_available() == 0) {
        return KernelState::Absent;
    }
    return dmr_q4_1_gemm_active() != 0 ? KernelState::Active : KernelState::Off;
#else
    return KernelState::Unknown;
#endif
}

}  // namespace dmr
