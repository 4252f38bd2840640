// dmr's matrix product for Q4_1 weights times Q8_1 activations on x86 CPUs with AVX512-VNNI.
//
// Why it exists: on CPUs, a Q4_1 model (the bundled SmolLM2) spends about 70% of its time in
// ggml's ggml_vec_dot_q4_1_q8_1 (perf, llama-batched-bench, 8 streams). That kernel computes one weight row
// against one activation column at a time with 256-bit AVX2 and unpacks the weights and converts the fp16
// scales again for every pair, and llama.cpp has no tiled (llamafile/tinyBLAS or repacked) path for Q4_1.
// This kernel computes 4x4 tiles of the output with 512-bit VNNI dot products (vpdpbusd: the weights'
// unsigned nibbles times the activations' signed bytes), unpacks each weight block once per four columns
// and converts each scale once per row tile (weights) or per call (activations). bench/README.md has the measured speed-ups.
//
// How it is wired in (cmake/DmrKernels.cmake): llama.cpp's llamafile/sgemm.cpp is compiled with its
// llamafile_sgemm renamed to dmr_upstream_llamafile_sgemm, and this file, added to the same ggml-cpu target,
// defines llamafile_sgemm. ggml's mul_mat offers every matrix product to llamafile_sgemm; this one takes
// Q4_1 x Q8_1 and hands everything else to the original unchanged. No llama.cpp file is edited.
//
// Numerics: every output element is computed by the same sequence of operations whatever the shape of the
// batch it is in (a lone decode row, eight of them, a 512-token prompt chunk), so a request's greedy output
// does not depend on what else is in the batch; unlike ggml's own paths, where products with one column and
// with several take different kernels. Sums are taken in another order than ggml's, so results differ
// from ggml's in the last bits (tests/native/test_kernels.py bounds the difference).
//
// DMR_Q4_1_GEMM=0 in the environment turns it off (ggml's own kernel then runs), for comparisons.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ggml-cpu-impl.h"
#include "ggml.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VNNI__) && \
    defined(__F16C__)
#define DMR_Q4_1_GEMM_AVAILABLE 1
#include <immintrin.h>
#else
#define DMR_Q4_1_GEMM_AVAILABLE 0
#endif

extern "C" bool dmr_upstream_llamafile_sgemm(const struct ggml_compute_params * params, int64_t m, int64_t n,
                                             int64_t k, const void * A, int64_t lda, const void * B,
                                             int64_t ldb, void * C, int64_t ldc, int Atype, int Btype,
                                             int Ctype);

namespace {

bool enabled_by_environment() {
    const char * value = std::getenv("DMR_Q4_1_GEMM");
    return value == nullptr || std::strcmp(value, "0") != 0;
}

#if DMR_Q4_1_GEMM_AVAILABLE

// ggml's block layouts (ggml-common.h), restated so that this file needs no llama.cpp internals beyond
// ggml_compute_params.
struct BlockQ4_1 {
    uint16_t d;  // fp16 scale
    uint16_t m;  // fp16 offset: weight = d * q + m, q in 0..15
    uint8_t qs[16];  // element i in the low nibble of qs[i], element i + 16 in the high nibble
};
struct BlockQ8_1 {
    uint16_t d;  // fp16 scale
    uint16_t s;  // fp16 d * sum(qs)
    int8_t qs[32];
};
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block layout");
static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 block layout");

constexpr int kTile = 4;  // output tile: kTile weight rows x kTile activation columns

// Two consecutive weight blocks as 64 unsigned bytes in element order (the activations' byte order):
// [lo nibbles of block 0 | hi nibbles of block 0 | lo of block 1 | hi of block 1].
inline __m512i weight_pair(const BlockQ4_1 * x, bool second) {
    const __m256i first = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i *>(x[0].qs)));
    const __m256i next = second
        ? _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i *>(x[1].qs)))
        : _mm256_setzero_si256();
    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(first), next, 1);
    const __m512i shifted = _mm512_srlv_epi64(both, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
    return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
}

inline __m512i activation_pair(const BlockQ8_1 * y, bool second) {
    const __m256i first = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(y[0].qs));
    const __m256i next =
        second ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(y[1].qs)) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(first), next, 1);
}

// Lanes 0-7 carry scale[0] (block 0's eight partial sums), lanes 8-15 scale[1].
inline __m512 scale_pair(const float * scale, bool second) {
    const __m512 first = _mm512_set1_ps(scale[0]);
    return _mm512_insertf32x8(first, second ? _mm256_set1_ps(scale[1]) : _mm256_setzero_ps(), 1);
}

// sum of a[i] * b[i] over count floats, in one fixed order whatever the tile
inline float dot_floats(const float * a, const float * b, int64_t count) {
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < count; i += 16) {
        const __mmask16 mask = count - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (count - i)) - 1);
        sum = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i), sum);
    }
    return _mm512_reduce_add_ps(sum);
}

// Activation columns' block scales as floats, one column after another: d[c * k + b], and s likewise.
struct ColumnScales {
    std::vector<float> d;
    std::vector<float> s;
};

void load_column_scales(const BlockQ8_1 * blocks, int64_t stride, int64_t n, int64_t k, ColumnScales & out) {
    out.d.resize(n * k);
    out.s.resize(n * k);
    for (int64_t c = 0; c < n; ++c) {
        const BlockQ8_1 * col = blocks + c * stride;
        for (int64_t b = 0; b < k; ++b) {
            out.d[c * k + b] = _cvtsh_ss(col[b].d);
            out.s[c * k + b] = _cvtsh_ss(col[b].s);
        }
    }
}

// A row tile's scales, prepared once and used against every column: d of each block pair already spread over
// the lanes its partial sums occupy (scale_pair's layout), and m as floats: m[r * k + b].
struct RowScales {
    std::vector<__m512> d_pairs;  // [r * pairs + p]
    std::vector<float> m;
    int64_t pairs = 0;
};

void load_row_scales(const BlockQ4_1 * blocks, int64_t stride, int64_t first, int64_t count, int64_t k,
                     RowScales & out) {
    out.pairs = (k + 1) / 2;
    out.d_pairs.resize(count * out.pairs);
    out.m.resize(count * k);
    // [d0 m0 d1 m1] as fp16 -> floats -> d0 in lanes 0-7, d1 in lanes 8-15
    const __m512i spread = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t r = 0; r < count; ++r) {
        const BlockQ4_1 * row = blocks + (first + r) * stride;
        for (int64_t p = 0; p < out.pairs; ++p) {
            const int64_t b = 2 * p;
            uint32_t dm0;
            uint32_t dm1 = 0;
            std::memcpy(&dm0, &row[b], sizeof dm0);
            if (b + 1 < k) {
                std::memcpy(&dm1, &row[b + 1], sizeof dm1);
            }
            const __m128 dm = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(int(dm0)), int(dm1), 1));
            out.d_pairs[r * out.pairs + p] = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(dm));
            out.m[r * k + b] = _mm_cvtss_f32(_mm_movehdup_ps(dm));
            if (b + 1 < k) {
                out.m[r * k + b + 1] = _mm_cvtss_f32(_mm_movehl_ps(dm, _mm_movehdup_ps(dm)));
            }
        }
    }
}

struct Problem {
    int64_t k;  // blocks per row
    const BlockQ4_1 * A;
    int64_t lda;
    const BlockQ8_1 * B;
    int64_t ldb;
    float * C;
    int64_t ldc;
};

// One RM x RN tile at weight row i0 (whose scales start at row_scales) and activation column j0.
template <int RM, int RN>
void tile(const Problem & p, const RowScales & row_scales, const ColumnScales & col_scales, int64_t i0, int64_t j0) {
    const int64_t k = p.k;
    __m512 acc[RM][RN];
    for (int i = 0; i < RM; ++i) {
        for (int j = 0; j < RN; ++j) {
            acc[i][j] = _mm512_setzero_ps();
        }
    }
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t b = 0; b < k; b += 2) {
        const bool second = b + 1 < k;
        __m512i act[RN];
        __m512 act_scale[RN];
        for (int j = 0; j < RN; ++j) {
            act[j] = activation_pair(p.B + (j0 + j) * p.ldb + b, second);
            act_scale[j] = scale_pair(col_scales.d.data() + (j0 + j) * k + b, second);
        }
        for (int i = 0; i < RM; ++i) {
            const __m512i w = weight_pair(p.A + (i0 + i) * p.lda + b, second);
            const __m512 w_scale = row_scales.d_pairs[i * row_scales.pairs + b / 2];
            for (int j = 0; j < RN; ++j) {
                const __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, w, act[j]));
                acc[i][j] = _mm512_fmadd_ps(dot, _mm512_mul_ps(w_scale, act_scale[j]), acc[i][j]);
            }
        }
    }
    for (int i = 0; i < RM; ++i) {
        for (int j = 0; j < RN; ++j) {
            // sum_b (d_x d_y sum(q_x q_y) + m_x s_y), as ggml's Q4_1 dot product defines it
            const float offsets =
                dot_floats(row_scales.m.data() + i * k, col_scales.s.data() + (j0 + j) * k, k);
            p.C[(j0 + j) * p.ldc + i0 + i] = _mm512_reduce_add_ps(acc[i][j]) + offsets;
        }
    }
}

using TileFn = void (*)(const Problem &, const RowScales &, const ColumnScales &, int64_t, int64_t);

template <int RM>
constexpr TileFn tile_for(int rn) {
    return rn == 1 ? tile<RM, 1> : rn == 2 ? tile<RM, 2> : rn == 3 ? tile<RM, 3> : tile<RM, 4>;
}

TileFn tile_fn(int rm, int rn) {
    switch (rm) {
        case 1: return tile_for<1>(rn);
        case 2: return tile_for<2>(rn);
        case 3: return tile_for<3>(rn);
        default: return tile_for<4>(rn);
    }
}

// Thread ith of nth computes the output rows of its share of row tiles, against every column. Columns go in
// blocks of kColumnBlock, so that a prompt chunk's activations (up to ~1 MB at 512 tokens) are not streamed
// again for every row tile: a block's activations (~110 KB at k = 1536) and the thread's weight rows stay in
// L2 while they meet.
constexpr int64_t kColumnBlock = 64;

void gemm(const Problem & p, int64_t m, int64_t n, int ith, int nth) {
    const int64_t row_tiles = (m + kTile - 1) / kTile;
    const int64_t first_tile = row_tiles * ith / nth;
    const int64_t end_tile = row_tiles * (ith + 1) / nth;
    if (first_tile >= end_tile) {
        return;
    }
    thread_local ColumnScales col_scales;
    thread_local RowScales row_scales;
    load_column_scales(p.B, p.ldb, n, p.k, col_scales);
    for (int64_t block = 0; block < n; block += kColumnBlock) {
        const int64_t block_end = block + kColumnBlock < n ? block + kColumnBlock : n;
        for (int64_t t = first_tile; t < end_tile; ++t) {
            const int64_t i0 = t * kTile;
            const int rm = int(m - i0 < kTile ? m - i0 : kTile);
            load_row_scales(p.A, p.lda, i0, rm, p.k, row_scales);
            for (int64_t j0 = block; j0 < block_end; j0 += kTile) {
                const int rn = int(block_end - j0 < kTile ? block_end - j0 : kTile);
                tile_fn(rm, rn)(p, row_scales, col_scales, i0, j0);
            }
        }
    }
}

#endif  // DMR_Q4_1_GEMM_AVAILABLE

}  // namespace

extern "C" {

// 1 when this build carries the kernel (the compiler targets AVX512-VNNI), else 0.
int dmr_q4_1_gemm_available(void) { return DMR_Q4_1_GEMM_AVAILABLE; }

// 1 when ggml's Q4_1 matrix products run through the kernel: available and not turned off by DMR_Q4_1_GEMM=0.
int dmr_q4_1_gemm_active(void) {
    static const bool enabled = enabled_by_environment();
    return DMR_Q4_1_GEMM_AVAILABLE && enabled;
}

bool llamafile_sgemm(const struct ggml_compute_params * params, int64_t m, int64_t n, int64_t k, const void * A,
                     int64_t lda, const void * B, int64_t ldb, void * C, int64_t ldc, int Atype, int Btype,
                     int Ctype) {
#if DMR_Q4_1_GEMM_AVAILABLE
    if (Atype == GGML_TYPE_Q4_1 && Btype == GGML_TYPE_Q8_1 && Ctype == GGML_TYPE_F32 && dmr_q4_1_gemm_active()) {
        const Problem problem{k, static_cast<const BlockQ4_1 *>(A), lda, static_cast<const BlockQ8_1 *>(B), ldb,
                              static_cast<float *>(C), ldc};
        gemm(problem, m, n, params->ith, params->nth);
        return true;
    }
#endif
    return dmr_upstream_llamafile_sgemm(params, m, n, k, A, lda, B, ldb, C, ldc, Atype, Btype, Ctype);
}

}  // extern "C"
