"""What `pip install` put on disk: a self-contained compiled module and no llama.cpp sources."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_module_is_installed_outside_the_checkout() -> None:
    from dmr import _native

    assert not Path(_native.__file__).resolve().is_relative_to(REPO / "dmr")


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd is not available")
def test_module_needs_no_missing_libraries() -> None:
    from dmr import _native

    out = subprocess.run(["ldd", _native.__file__], capture_output=True, text=True, check=True).stdout
    assert "not found" not in out, out


def test_wheel_carries_no_llama_cpp_sources() -> None:
    files = importlib.metadata.files("dmr-cpu") or []
    names = [str(f) for f in files]
    assert any(n.startswith("dmr/_native") for n in names)
    sources = [n for n in names if n.endswith((".c", ".cpp", ".cc", ".h", ".hpp", ".cu", ".metal", ".comp"))]
    assert sources == []
    assert not [n for n in names if "llama.cpp" in n or n.startswith(("ggml", "vendor"))]


def test_importing_dmr_does_not_load_the_native_module() -> None:
    code = "import sys, dmr, dmr.errors, dmr.config; print('dmr._native' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False"
