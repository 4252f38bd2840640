"""GPU wheels built from this tree (tools/build_wheel.py; `./scripts/test` builds them into dist/ when the
toolchains are installed), each installed into a fresh virtual environment:

- dmr-opencl: ggml-opencl accepts only Adreno and Intel GPUs, so on this machine (no GPU; pocl's CPU device
  is refused) it finds no device. Models must still load and answer on the CPU, and `dmr version`,
  `dmr status` and the server log must carry the one-line notice.
- dmr-vulkan: runs the model tests on Mesa's lavapipe (a Vulkan device in software; ggml-vulkan skips
  CPU-type devices unless GGML_VK_VISIBLE_DEVICES names them), and falls back with the notice without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from server.helpers import running_server

from dmr.engine.llama import cpu_fallback_notice

ROOT = Path(__file__).resolve().parents[2]
WHEELS = Path(os.environ.get("DMR_TEST_GPU_WHEELS", ROOT / "dist"))


def test_notice_only_for_a_gpu_build_without_a_gpu() -> None:
    cpu = {"name": "CPU", "type": "cpu"}
    gpu = {"name": "CUDA0", "type": "gpu"}
    assert cpu_fallback_notice("cpu", [cpu]) is None
    assert cpu_fallback_notice("cuda", [cpu, gpu]) is None
    assert cpu_fallback_notice("vulkan", [cpu, {"name": "Vulkan0", "type": "igpu"}]) is None
    line = cpu_fallback_notice("cuda", [cpu])
    assert line == "built for CUDA, but no CUDA device was found: running on the CPU"
    assert "\n" not in line
    assert "OpenCL" in (cpu_fallback_notice("opencl", [cpu, {"name": "BLAS", "type": "accel"}]) or "")


def wheel_python(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Path:
    wheels = sorted(WHEELS.glob(f"dmr_{backend}-*.whl"))
    if not wheels:
        how = "./scripts/test builds it when it can" if backend != "cuda" else "not built by ./scripts/test"
        make = f"tools/build_wheel.py --backend {backend} -o dist"
        pytest.skip(f"no dmr-{backend} wheel in {WHEELS} ({how}; {make})")
    venv = tmp_path_factory.mktemp(f"{backend}-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The wheel's dependencies (uvicorn, pytest-asyncio, ...) come from this environment. When this is itself
    # a venv, `--system-site-packages` would reach the base interpreter's site-packages instead, which lack
    # them: a .pth file appends this environment's paths after the new venv's own site-packages, so the
    # wheel's `dmr` shadows the CPU build's.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = [p for p in sys.path if p.endswith("-packages")]
    (Path(site) / "_dmr_test_outer_env.pth").write_text("".join(f"{p}\n" for p in outer))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[-1])], check=True
    )
    if backend == "cuda":
        # the module finds cuBLAS through its rpath ($ORIGIN/../nvidia/cu13/lib), i.e. in its own
        # site-packages, where `pip install dmr-cuda` puts its dependencies: install them there too
        deps = ["nvidia-cublas>=13,<14", "nvidia-cuda-runtime>=13,<14"]
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", *deps], check=True
        )
    return python


@pytest.fixture(scope="module")
def opencl_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheel_python(tmp_path_factory, "opencl")


@pytest.fixture(scope="module", params=["opencl", "cuda"])
def fallback_wheel(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """GPU wheels whose device this machine lacks. dmr-cuda is not built by ./scripts/test (about 40 minutes
    of 2 cores for one architecture): `python tools/build_wheel.py --backend cuda -o dist` makes it."""
    return request.param, wheel_python(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def vulkan_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheel_python(tmp_path_factory, "vulkan")


def run_py(python: Path, code: str, **env: str) -> str:
    out = subprocess.run(
        [str(python), "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, **env},
        timeout=300,
    )
    return out.stdout


def test_gpu_wheel_without_its_gpu_runs_on_the_cpu(
    fallback_wheel: tuple[str, Path], smollm2_path: Path
) -> None:
    backend, python = fallback_wheel
    name = {"opencl": "OpenCL", "cuda": "CUDA"}[backend]
    info = json.loads(
        run_py(
            python,
            "import json, dmr; from dmr.engine.llama import build_info; "
            "print(json.dumps({**build_info(), 'file': dmr.__file__}))",
        )
    )
    assert info["backend"] == backend
    assert f"{backend}-venv" in info["file"]  # the wheel's module, not the CPU build's
    assert all(d["type"] == "cpu" or d["type"] == "accel" for d in info["devices"])
    assert info["notice"] == f"built for {name}, but no {name} device was found: running on the CPU"
    # and the model still answers, on the CPU
    text = run_py(
        python,
        "from dmr import _native as n\n"
        f"m = n.Model.load({str(smollm2_path)!r})\n"
        "s = n.Session.create(m, n_ctx=512, n_threads=2)\n"
        "p = m.tokenize('<|im_start|>user\\nWhat is the capital of France?<|im_end|>\\n'\n"
        "               '<|im_start|>assistant\\n', parse_special=True)\n"
        "print(''.join(t for _, t in s.generate(p, max_tokens=12, temperature=0.0)))",
    )
    assert "Paris" in text


def test_opencl_notice_in_dmr_version_status_and_log(opencl_python: Path, tmp_path: Path) -> None:
    with running_server(tmp_path, tmp_path / "models", python=opencl_python) as server:
        env = {**os.environ, "DMR_HOST": server.url}
        dmr = [str(opencl_python), "-m", "dmr.cli.main"]
        notice = "built for OpenCL, but no OpenCL device was found: running on the CPU"
        version = subprocess.run([*dmr, "version"], env=env, cwd="/", capture_output=True, text=True)
        assert version.returncode == 0, version.stderr
        assert " Backend:    opencl" in version.stdout
        # The client (this same wheel) and the server each report their own build: one notice per section.
        client_part, _, server_part = version.stdout.partition("Server:")
        for part in (client_part, server_part):
            notices = [line for line in part.splitlines() if "Notice" in line]
            assert notices == [f" Notice:     {notice}"], version.stdout
        status = subprocess.run([*dmr, "status"], env=env, cwd="/", capture_output=True, text=True)
        assert status.returncode == 0, status.stderr
        assert notice in status.stdout
        logs = subprocess.run([*dmr, "logs"], env=env, cwd="/", capture_output=True, text=True)
        assert notice in logs.stdout


LAVAPIPE = {"GGML_VK_VISIBLE_DEVICES": "0"}  # lavapipe is the only Vulkan device here


def test_vulkan_wheel_reports_its_backend_and_lavapipe(vulkan_python: Path) -> None:
    code = "import json; from dmr.engine.llama import build_info; print(json.dumps(build_info()))"
    info = json.loads(run_py(vulkan_python, code, **LAVAPIPE))
    assert info["backend"] == "vulkan"
    assert any(d["type"] == "gpu" and "llvmpipe" in d["description"] for d in info["devices"]), info
    assert "notice" not in info
    # without a usable Vulkan device: the CPU, with the notice
    bare = json.loads(run_py(vulkan_python, code))
    assert bare["notice"] == "built for Vulkan, but no Vulkan device was found: running on the CPU"


def test_vulkan_wheel_passes_the_model_tests_on_lavapipe(vulkan_python: Path) -> None:
    # The model and session tests (load, facts, bad input, greedy/seeded/grammar generation, stop strings,
    # prefix reuse, context end) with every layer on lavapipe. The engine tests are left out: at ~0.5 s
    # per token in software they would take hours.
    tests = ROOT / "tests"
    result = subprocess.run(
        [
            str(vulkan_python),
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            "-q",
            "-p",
            "no:cacheprovider",
            "native/test_model.py",
            "native/test_session.py",
        ],
        cwd=tests,
        env={**os.environ, **LAVAPIPE, "DMR_EXPECT_BACKEND": "vulkan"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
