"""dmr's own CPU kernel (csrc/kernels/q4_1_gemm.cpp) against exact arithmetic and against ggml's kernel.

Each product goes through ggml's real mul_mat on the CPU backend (`_native.cpu_mul_mat`), the path every
Q4_1 layer of a model takes; ggml quantizes the activations to Q8_1 there, and the reference below does the
same in numpy, so that the comparison with exact (float64) arithmetic can be tight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from dmr import _native as native
from dmr.errors import InvalidRequestError

GGML_TYPE_Q4_1 = 3
Q4_1_BLOCK = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)])
CPU_FLAGS = {
    flag
    for line in (Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else [])
    if line.startswith("flags")
    for flag in line.split(":", 1)[1].split()
}
VNNI_CPU = {"avx512f", "avx512bw", "avx512dq", "avx512_vnni", "f16c"} <= CPU_FLAGS


def random_q4_1(rng: np.random.Generator, rows: int, k: int) -> npt.NDArray[np.void]:
    blocks = np.zeros((rows, k // 32), dtype=Q4_1_BLOCK)
    blocks["d"] = rng.uniform(0.001, 0.05, blocks.shape).astype(np.float16)
    blocks["m"] = rng.uniform(-0.4, 0.0, blocks.shape).astype(np.float16)
    blocks["qs"] = rng.integers(0, 256, (*blocks.shape, 16), dtype=np.uint8)
    return blocks


def raw(blocks: npt.NDArray[np.void]) -> npt.NDArray[np.uint8]:
    return np.frombuffer(blocks.tobytes(), dtype=np.uint8)


def exact_product(blocks: npt.NDArray[np.void], acts: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """sum over blocks of d_w d_a sum(q_w q_a) + m_w s_a in float64, with the activations quantized to Q8_1
    as ggml's quantize_row_q8_1 does (scale amax / 127, round half to even, s = d * sum(q) in fp16)."""
    n_blocks = blocks.shape[1]
    n = acts.shape[0]
    qs = blocks["qs"]
    q_w = np.concatenate([qs & 15, qs >> 4], axis=-1).astype(np.float64)  # element i, then i + 16
    a = acts.reshape(n, n_blocks, 32)
    amax = np.abs(a).max(axis=-1)
    d_a = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, 0).astype(np.float32)
    q_a = np.round(a * inv[..., None]).astype(np.float64)
    s_a = (d_a * q_a.sum(axis=-1).astype(np.float32)).astype(np.float16).astype(np.float64)
    d_a16 = d_a.astype(np.float16).astype(np.float64)
    d_w = blocks["d"].astype(np.float64)
    m_w = blocks["m"].astype(np.float64)
    return np.einsum("rbi,nbi,rb,nb->nr", q_w, q_a, d_w, d_a16) + np.einsum("rb,nb->nr", m_w, s_a)


# (weight rows, elements per row, activation rows): SmolLM2's layer shapes, an odd block count, row and
# column counts that are not multiples of the kernel's 4x4 tile, a lone decode row, a prompt chunk
SHAPES = [(576, 576, 8), (1536, 576, 5), (576, 1536, 1), (192, 576, 64), (37, 608, 13), (3, 32, 2)]


@pytest.mark.parametrize(("rows", "k", "n"), SHAPES)
def test_q4_1_product_matches_exact_arithmetic(rows: int, k: int, n: int) -> None:
    rng = np.random.default_rng(rows * 7 + k + n)
    blocks = random_q4_1(rng, rows, k)
    acts = rng.standard_normal((n, k)).astype(np.float32)
    out = native.cpu_mul_mat(GGML_TYPE_Q4_1, raw(blocks), rows, acts, n_threads=2)
    ref = exact_product(blocks, acts)
    assert out.shape == (n, rows)
    # float32 sums of k products: a few units of float32 rounding relative to the largest output; a wrong
    # nibble, block scale or offset term is off by percents
    assert np.abs(out - ref).max() <= 2e-6 * np.abs(ref).max()


def test_each_column_is_the_same_alone_and_in_any_batch() -> None:
    """A request's greedy output must not depend on what else is in the batch: every output element takes
    the same operations whether its activation row is alone, in a decode step of 8 or in a prompt chunk."""
    rng = np.random.default_rng(1)
    rows, k = 101, 576
    blocks = random_q4_1(rng, rows, k)
    acts = rng.standard_normal((23, k)).astype(np.float32)
    whole = native.cpu_mul_mat(GGML_TYPE_Q4_1, raw(blocks), rows, acts, n_threads=2)
    for start, stop in [(0, 1), (5, 6), (3, 11), (7, 23)]:
        part = native.cpu_mul_mat(GGML_TYPE_Q4_1, raw(blocks), rows, acts[start:stop].copy(), n_threads=1)
        assert np.array_equal(part, whole[start:stop])


def _product_in_subprocess(env_value: str, seed: int) -> tuple[str, list[list[float]]]:
    code = (
        "import json, sys, numpy as np\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from test_kernels import random_q4_1, raw, GGML_TYPE_Q4_1\n"
        "from dmr import _native as native\n"
        f"rng = np.random.default_rng({seed})\n"
        "blocks = random_q4_1(rng, 300, 1536)\n"
        "acts = rng.standard_normal((9, 1536)).astype(np.float32)\n"
        "out = native.cpu_mul_mat(GGML_TYPE_Q4_1, raw(blocks), 300, acts, n_threads=2)\n"
        "print(json.dumps([native.cpu_kernels()['q4_1'], out.tolist()]))\n"
    )
    env = dict(os.environ, DMR_Q4_1_GEMM=env_value)
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    state, values = json.loads(done.stdout.strip().splitlines()[-1])
    return state, values


@pytest.mark.skipif(not VNNI_CPU, reason="dmr's Q4_1 kernel needs AVX512-VNNI; this CPU runs ggml's")
def test_kernel_is_in_use_and_agrees_with_ggml_kernel() -> None:
    """On a CPU with AVX512-VNNI the native build runs dmr's kernel (a build that lost the hook would fall
    back silently); DMR_Q4_1_GEMM=0 brings back ggml's, and both give the same products to float rounding."""
    assert native.cpu_kernels() == {"q4_1": "active"}
    ours_state, ours = _product_in_subprocess("1", 5)
    ggml_state, ggml = _product_in_subprocess("0", 5)
    assert (ours_state, ggml_state) == ("active", "off")
    a, b = np.array(ours), np.array(ggml)
    assert not np.array_equal(a, b)  # two kernels really ran: they sum in different orders
    assert np.abs(a - b).max() <= 2e-6 * np.abs(b).max()


def test_product_with_wrong_weight_size_is_refused() -> None:
    acts = np.ones((2, 64), dtype=np.float32)
    with pytest.raises(InvalidRequestError, match="take 40 bytes, not 30"):
        native.cpu_mul_mat(GGML_TYPE_Q4_1, np.zeros(30, dtype=np.uint8), 1, acts)
    with pytest.raises(InvalidRequestError, match="unknown ggml type"):
        native.cpu_mul_mat(9999, np.zeros(40, dtype=np.uint8), 1, acts)
    with pytest.raises(InvalidRequestError, match="cannot multiply i32"):
        native.cpu_mul_mat(26, np.zeros(256, dtype=np.uint8), 1, acts)
    with pytest.raises(InvalidRequestError, match="multiple of the type's block size"):
        native.cpu_mul_mat(GGML_TYPE_Q4_1, np.zeros(40, dtype=np.uint8), 1, np.ones((1, 48), np.float32))
