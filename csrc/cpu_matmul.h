// One matrix product on ggml's CPU backend, through the same ggml_mul_mat path a model's layers take.
// Used by tests/native/test_kernels.py to hold dmr's own kernels (csrc/kernels) to ggml's results.
#pragma once

#include <cstddef>
#include <cstdint>

#include "status.h"

namespace dmr {

// out[j * rows + i] = sum over the k elements of weight row i times activation row j, where the weights are
// `rows` rows of `k` elements in ggml type `weight_type`, stored as ggml stores them (blocks), and the
// activations are n rows of k floats. ggml quantizes the activations as it does for a model.
Status cpu_mul_mat(int weight_type, const void * weights, size_t weights_size, int64_t rows, int64_t k,
                   const float * activations, int64_t n, int n_threads, float * out);

// dmr's Q4_1 kernel in this build: in use, turned off (DMR_Q4_1_GEMM=0), not in it (other CPUs,
// DMR_KERNELS=OFF), or not visible from here (a portable build's CPU backend library off Linux).
enum class KernelState : int { Absent = 0, Off = 1, Active = 2, Unknown = 3 };
KernelState q4_1_kernel_state();

}  // namespace dmr
