"""tools/build_wheel.py: names, env knobs and commands per backend (dry runs and staging only: no compile)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "build_wheel.py"
BACKENDS = ("cpu", "cuda", "rocm", "vulkan", "metal", "opencl")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dmr_build_wheel", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


bw = _load()


def _dry(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(TOOL), "--dry-run", "--json", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dry_run_names_the_distribution_per_backend(tmp_path: Path, backend: str) -> None:
    stage = tmp_path / "stage"
    plan = _dry(
        "--backend", backend, "--stage", str(stage), "-o", str(tmp_path / "dist"), "--frontend", "pip"
    )
    assert plan["dist_name"] == plan["pyproject_name"] == f"dmr-{backend}"
    assert plan["env"]["DMR_BACKEND"] == backend
    assert plan["env"]["DMR_CPU_VARIANTS"] == "OFF"  # a developer build stays native
    cmd = plan["command"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "wheel"]
    assert cmd[-1] == str(stage) and str(tmp_path / "dist") in cmd
    assert not stage.exists(), "a dry run must not write anything"


@pytest.mark.parametrize("backend", ["cpu", "cuda", "rocm", "vulkan", "opencl"])
def test_release_builds_carry_every_cpu_variant_on_linux(backend: str) -> None:
    plan = bw.make_plan(backend, release=True, outdir=Path("dist"), platform="linux")
    assert plan.env["DMR_CPU_VARIANTS"] == "ON"


def test_metal_release_keeps_the_native_static_build() -> None:
    # CMakeLists.txt installs *.so backends with an $ORIGIN rpath: the DL layout is Linux-only.
    for platform in ("darwin", "linux"):
        plan = bw.make_plan("metal", release=True, outdir=Path("dist"), platform=platform)
        assert plan.env["DMR_CPU_VARIANTS"] == "OFF"


def test_cuda_arch_lists() -> None:
    assert _dry("--backend", "cuda")["env"]["DMR_CUDA_ARCHITECTURES"] == "90"
    release = _dry("--backend", "cuda", "--release")["env"]["DMR_CUDA_ARCHITECTURES"]
    assert release == bw.RELEASE_CUDA_ARCHS and "90-real" in release.split(";")
    assert (
        _dry("--backend", "cuda", "--release", "--cuda-archs", "89;90")["env"]["DMR_CUDA_ARCHITECTURES"]
        == "89;90"
    )
    assert "DMR_CUDA_ARCHITECTURES" not in _dry("--backend", "vulkan", "--release")["env"]


def test_cuda_wheel_depends_on_the_pypi_runtime_and_finds_it_by_rpath() -> None:
    plan = bw.make_plan("cuda", release=True, outdir=Path("dist"), platform="linux")
    assert plan.extra_dependencies == ["nvidia-cublas>=13,<14", "nvidia-cuda-runtime>=13,<14"]
    args = plan.env["CMAKE_ARGS"]
    assert "$ORIGIN/../nvidia/cu13/lib" in args and "$ORIGIN/../../nvidia/cu13/lib" in args
    assert "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON" in args


def test_cuda_uses_pip_cublas_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib, inc = tmp_path / "nvidia/cu13/lib", tmp_path / "nvidia/cu13/include"
    lib.mkdir(parents=True)
    inc.mkdir(parents=True)
    for name in ("libcublas.so.13", "libcublasLt.so.13"):
        (lib / name).write_bytes(b"")
    monkeypatch.setattr(bw, "find_pip_cublas", lambda: (lib, inc))
    monkeypatch.setattr(bw, "find_nvcc", lambda: "/opt/cuda/bin/nvcc")
    plan = bw.make_plan("cuda", release=False, outdir=Path("dist"), platform="linux")
    assert f"-DCUDA_cublas_LIBRARY={lib / 'libcublas.so.13'}" in plan.env["CMAKE_ARGS"]
    assert f"-DCUDA_cublasLt_LIBRARY={lib / 'libcublasLt.so.13'}" in plan.env["CMAKE_ARGS"]
    assert "-DCUDAToolkit_ROOT=/opt/cuda" in plan.env["CMAKE_ARGS"]
    assert plan.env["CPATH"].split(":")[0] == str(inc)
    assert plan.env["CUDACXX"] == "/opt/cuda/bin/nvcc"
    assert plan.missing == []


def test_missing_prerequisites_name_their_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bw, "_which", lambda name: None)
    monkeypatch.setattr(bw, "_header", lambda *c: None)
    monkeypatch.setattr(bw.glob, "glob", lambda pattern: [])
    monkeypatch.delenv("VULKAN_SDK", raising=False)
    monkeypatch.setattr(bw, "find_nvcc", lambda: None)
    monkeypatch.setattr(bw, "find_pip_cublas", lambda: None)

    def fixes(backend: str) -> str:
        return " ".join(
            m.fix for m in bw.make_plan(backend, release=False, outdir=Path("d"), platform="linux").missing
        )

    assert all(p in fixes("vulkan") for p in ("libvulkan-dev", "glslc", "spirv-headers"))
    assert "opencl-headers" in fixes("opencl") and "ocl-icd-opencl-dev" in fixes("opencl")
    assert "pip install 'nvidia-cublas" in fixes("cuda") and "CUDACXX" in fixes("cuda")
    assert "build-essential" in fixes("cpu")
    assert "macos" in fixes("metal")


def test_text_dry_run_prints_env_and_command(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            "--backend",
            "rocm",
            "--release",
            "--dry-run",
            "--stage",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "# dmr-rocm wheel (backend=rocm, release=yes)" in r.stdout
    assert "env: DMR_BACKEND=rocm" in r.stdout
    assert f"-DGPU_TARGETS={bw.RELEASE_ROCM_ARCHS}" in r.stdout
    assert any(ln.startswith("command: DMR_BACKEND=rocm ") for ln in r.stdout.splitlines())


def test_unknown_backend_is_refused() -> None:
    r = subprocess.run(
        [sys.executable, str(TOOL), "--backend", "tpu", "--dry-run"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "invalid choice: 'tpu'" in r.stderr


@pytest.mark.skipif(sys.platform == "darwin", reason="metal is buildable on macOS")
def test_real_run_stops_before_building_when_prerequisites_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bw.main(["--backend", "metal", "--stage", str(tmp_path / "s"), "-o", str(tmp_path / "d")]) == 2
    assert "prerequisite(s) missing for dmr-metal" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_rename_pyproject_rewrites_only_the_copy() -> None:
    original = (REPO / "pyproject.toml").read_text()
    text = bw.rename_pyproject(original, "dmr-cuda", ["nvidia-cublas>=13,<14"])
    tomllib = pytest.importorskip("tomllib")

    project = tomllib.loads(text)["project"]
    assert project["name"] == "dmr-cuda"
    assert project["dependencies"][0] == "nvidia-cublas>=13,<14"
    assert project["dependencies"][1:] == tomllib.loads(original)["project"]["dependencies"]
    assert (REPO / "pyproject.toml").read_text() == original
    assert tomllib.loads(original)["project"]["name"] == "dmr-cpu"


def test_stage_mirrors_the_clean_tree(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    plan = bw.make_plan("vulkan", release=False, outdir=tmp_path / "dist", stage=stage)
    (stage / "build" / "keep").mkdir(parents=True)
    (stage / "dmr").mkdir()
    (stage / "dmr" / "stale.py").write_text("")
    bw.sync_stage(plan)
    assert 'name = "dmr-vulkan"' in (stage / "pyproject.toml").read_text()
    assert (stage / "dmr" / "__init__.py").read_bytes() == (REPO / "dmr" / "__init__.py").read_bytes()
    assert (stage / "CMakeLists.txt").is_file() and (stage / "cmake" / "DmrBackends.cmake").is_file()
    assert not (stage / "dmr" / "stale.py").exists(), "files gone from the checkout leave the stage"
    assert (stage / "build" / "keep").is_dir(), "the stage's build dir survives (incremental rebuilds)"
    assert not (stage / "tests").exists() and not (stage / "vendor" / "llama.cpp").exists()
    assert not list(stage.glob("dmr/**/*.so")), "no build output of the checkout enters the stage"
    mtime = (stage / "CMakeLists.txt").stat().st_mtime_ns
    bw.sync_stage(plan)
    assert (stage / "CMakeLists.txt").stat().st_mtime_ns == mtime, "unchanged files are not rewritten"
