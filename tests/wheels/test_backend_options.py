"""cmake/DmrBackends.cmake + DmrOptions.cmake: which GGML_* switches each DMR_BACKEND turns on.

No compiler is needed: the pure functions run under `cmake -P`, and the option flow (cache values, validation)
runs as a configure of a LANGUAGES NONE project that includes the real DmrOptions.cmake.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CMAKE_DIR = REPO / "cmake"
CMAKE = shutil.which("cmake")
pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")

GPU_SWITCHES = ("GGML_CUDA", "GGML_HIP", "GGML_VULKAN", "GGML_METAL", "GGML_OPENCL")
EXPECTED: dict[str, dict[str, str]] = {
    "cpu": {},
    "cuda": {"GGML_CUDA": "ON", "GGML_CUDA_NO_VMM": "ON"},
    "rocm": {"GGML_HIP": "ON"},
    "vulkan": {"GGML_VULKAN": "ON"},
    "metal": {"GGML_METAL": "ON", "GGML_METAL_EMBED_LIBRARY": "ON"},
    "opencl": {
        "GGML_OPENCL": "ON",
        "GGML_OPENCL_USE_ADRENO_KERNELS": "OFF",
        "GGML_OPENCL_EMBED_KERNELS": "ON",
    },
}


def _expected(backend: str) -> dict[str, str]:
    return {**dict.fromkeys(GPU_SWITCHES, "OFF"), **EXPECTED[backend]}


def _run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "t.cmake"
    script.write_text(f'include("{CMAKE_DIR.as_posix()}/DmrBackends.cmake")\n{body}\n')
    assert CMAKE is not None
    return subprocess.run([CMAKE, "-P", str(script)], capture_output=True, text=True, timeout=30)


def _pairs(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split(";") if item)


def test_every_backend_maps_to_its_switches(tmp_path: Path) -> None:
    r = _run_script(
        tmp_path,
        "foreach(b IN LISTS DMR_BACKENDS)\n"
        "  dmr_backend_switches(${b} sw)\n"
        '  message(STATUS "SW ${b} ${sw}")\n'
        "endforeach()",
    )
    assert r.returncode == 0, r.stderr
    got = {}
    for line in r.stdout.splitlines():
        if line.startswith("-- SW "):
            _, _, backend, *rest = line.split(" ")
            got[backend] = rest[0] if rest else ""
    assert list(got) == list(EXPECTED), "DMR_BACKENDS must list every backend, cpu first"
    for backend, sw in got.items():
        items = [i for i in sw.split(";") if i]
        names = [i.split("=", 1)[0] for i in items]
        assert len(names) == len(set(names)), f"{backend}: a switch appears twice: {sw}"
        assert _pairs(sw) == _expected(backend), backend


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        (
            "ON",
            {
                "GGML_NATIVE": "OFF",
                "GGML_BACKEND_DL": "ON",
                "GGML_CPU_ALL_VARIANTS": "ON",
                "BUILD_SHARED_LIBS": "ON",
            },
        ),
        (
            "OFF",
            {
                "GGML_NATIVE": "ON",
                "GGML_BACKEND_DL": "OFF",
                "GGML_CPU_ALL_VARIANTS": "OFF",
                "BUILD_SHARED_LIBS": "OFF",
            },
        ),
        (
            "",
            {
                "GGML_NATIVE": "ON",
                "GGML_BACKEND_DL": "OFF",
                "GGML_CPU_ALL_VARIANTS": "OFF",
                "BUILD_SHARED_LIBS": "OFF",
            },
        ),
    ],
)
def test_cpu_variants_switches(tmp_path: Path, variants: str, expected: dict[str, str]) -> None:
    r = _run_script(tmp_path, f'dmr_cpu_switches("{variants}" sw)\nmessage(STATUS "SW ${{sw}}")')
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("-- SW "))
    assert _pairs(line.removeprefix("-- SW ")) == expected


def test_check_backend_rejects_unknown_names(tmp_path: Path) -> None:
    r = _run_script(tmp_path, 'dmr_check_backend("cuda")\ndmr_check_backend("tpu")')
    assert r.returncode != 0
    assert "DMR_BACKEND='tpu' is not one of: cpu;cuda;rocm;vulkan;metal;opencl" in r.stderr


# --- the real DmrOptions.cmake in a configure (no languages, so no compiler) ----------------------------

DUMPED = (
    *GPU_SWITCHES,
    "GGML_CUDA_NO_VMM",
    "GGML_NATIVE",
    "GGML_BACKEND_DL",
    "GGML_CPU_ALL_VARIANTS",
    "BUILD_SHARED_LIBS",
    "CMAKE_CUDA_ARCHITECTURES",
    "LLAMA_BUILD_TESTS",
    "DMR_BACKEND",
)


def _configure(tmp_path: Path, *defines: str) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    dump = "\n".join(f'message(STATUS "DUMP {v}=${{{v}}}")' for v in DUMPED)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\nproject(t LANGUAGES NONE)\n"
        f'list(APPEND CMAKE_MODULE_PATH "{CMAKE_DIR.as_posix()}")\ninclude(DmrOptions)\n{dump}\n'
    )
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    assert CMAKE is not None
    cmd = [CMAKE, "-S", str(src), "-B", str(tmp_path / "b"), *gen, *(f"-D{d}" for d in defines)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _dump(r: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return dict(
        ln.removeprefix("-- DUMP ").split("=", 1) for ln in r.stdout.splitlines() if ln.startswith("-- DUMP ")
    )


@pytest.mark.parametrize("backend", list(EXPECTED))
def test_configure_sets_the_cache_for_each_backend(tmp_path: Path, backend: str) -> None:
    r = _configure(
        tmp_path, f"DMR_BACKEND={backend.upper()}", "DMR_CPU_VARIANTS=ON", "DMR_CUDA_ARCHITECTURES=90"
    )
    assert r.returncode == 0, r.stderr
    got = _dump(r)
    assert got["DMR_BACKEND"] == backend  # case-insensitive knob
    for name in GPU_SWITCHES:
        assert got[name] == _expected(backend)[name], name
    assert (got["GGML_NATIVE"], got["GGML_BACKEND_DL"], got["BUILD_SHARED_LIBS"]) == ("OFF", "ON", "ON")
    assert got["LLAMA_BUILD_TESTS"] == "OFF"
    # the arch list reaches CMake only for CUDA
    assert got["CMAKE_CUDA_ARCHITECTURES"] == ("90" if backend == "cuda" else "")
    assert f"dmr: backend={backend} cpu_variants=ON" in r.stdout


def test_configure_default_is_a_native_cpu_build(tmp_path: Path) -> None:
    r = _configure(tmp_path)
    assert r.returncode == 0, r.stderr
    got = _dump(r)
    assert got["DMR_BACKEND"] == "cpu"
    assert all(got[n] == "OFF" for n in GPU_SWITCHES)
    assert (got["GGML_NATIVE"], got["GGML_BACKEND_DL"], got["BUILD_SHARED_LIBS"]) == ("ON", "OFF", "OFF")


def test_configure_fails_on_an_unknown_backend(tmp_path: Path) -> None:
    r = _configure(tmp_path, "DMR_BACKEND=tpu")
    assert r.returncode != 0
    assert "DMR_BACKEND='tpu' is not one of: cpu;cuda;rocm;vulkan;metal;opencl" in r.stderr
