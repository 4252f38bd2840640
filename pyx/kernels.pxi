# dmr's own CPU kernels (csrc/kernels): whether they are in this build, and one ggml matrix product to check
# them against (tests/native/test_kernels.py).
import numpy as _np

from libc.stdint cimport int64_t

from includes.dmr_core cimport KernelState, cpu_mul_mat as c_cpu_mul_mat, q4_1_kernel_state


def cpu_kernels():
    """{"q4_1": state}: dmr's Q4_1 x Q8_1 kernel (AVX512-VNNI) is "active", turned "off" by DMR_Q4_1_GEMM=0,
    "absent" from this build (other CPUs, DMR_KERNELS=OFF) or "unknown" (a portable build's CPU backend
    library, picked at run time, off Linux)."""
    cdef KernelState state = q4_1_kernel_state()
    if state == KernelState.Active:
        return {"q4_1": "active"}
    if state == KernelState.Off:
        return {"q4_1": "off"}
    if state == KernelState.Absent:
        return {"q4_1": "absent"}
    return {"q4_1": "unknown"}


def cpu_mul_mat(int weight_type, const unsigned char[::1] weights not None, int64_t rows,
                const float[:, ::1] activations not None, int n_threads=1):
    """ggml_mul_mat on the CPU backend: `rows` weight rows of ggml type `weight_type` (raw blocks) times each
    row of `activations` (n x k float32). Returns an n x rows float32 array."""
    cdef int64_t n = activations.shape[0]
    cdef int64_t k = activations.shape[1]
    if n == 0 or k == 0 or rows <= 0 or weights.shape[0] == 0:
        raise ValueError("need at least one weight row, one activation row and one element")
    out = _np.empty((n, rows), dtype=_np.float32)
    cdef float[:, ::1] out_view = out
    cdef CStatus st
    with nogil:
        st = c_cpu_mul_mat(weight_type, &weights[0], weights.shape[0], rows, k, &activations[0, 0], n, n_threads,
                           &out_view[0, 0])
    check_status(st)
    return out
