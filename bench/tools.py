"""Builds llama.cpp's own tools (llama-bench, llama-server, llama-quantize) from the same pinned source
as dmr's module, with the same flags, into build/tools (ccache makes the shared objects cheap)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = ROOT / "build" / "tools"


def tool_path(name: str) -> Path:
    return TOOLS_DIR / "bin" / name


def build_tools(
    names: tuple[str, ...] = ("llama-bench", "llama-server", "llama-quantize"),
) -> dict[str, Path]:
    if all(tool_path(n).exists() for n in names):
        return {n: tool_path(n) for n in names}
    env = dict(os.environ, CCACHE_BASEDIR=str(ROOT), CCACHE_NOHASHDIR="1")
    cmake = shutil.which("cmake") or "cmake"
    subprocess.run(
        [
            cmake,
            "-S",
            str(ROOT),
            "-B",
            str(TOOLS_DIR),
            "-G",
            "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DDMR_BUILD_TOOLS=ON",
            # the peers run llama.cpp's own kernels, not dmr's (cmake/DmrKernels.cmake)
            "-DDMR_KERNELS=OFF",
            f"-DPython_EXECUTABLE={sys.executable}",
        ],
        check=True,
        env=env,
    )
    subprocess.run([cmake, "--build", str(TOOLS_DIR), "--target", *names], check=True, env=env)
    return {n: tool_path(n) for n in names}


if __name__ == "__main__":
    for name, path in build_tools().items():
        print(name, path)
