""".github/workflows/wheels.yml cannot run here: it must parse and build every backend with the tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "wheels.yml"


def _jobs() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def test_every_backend_is_built_by_build_wheel_py() -> None:
    built: set[str] = set()
    for job in _jobs().values():
        runs = " ".join(step.get("run", "") for step in job["steps"])
        if "tools/build_wheel.py --backend" not in runs or "--dry-run" in runs:
            continue
        assert "--release" in runs
        matrix = job.get("strategy", {}).get("matrix", {})
        if "include" in matrix:
            built |= {entry["backend"] for entry in matrix["include"]}
        else:
            built |= {b for b in ("metal",) if f"--backend {b}" in runs}
    assert built == {"cpu", "cuda", "rocm", "vulkan", "metal", "opencl"}


def test_cpu_wheel_is_built_for_both_linux_arches_and_smoke_tested() -> None:
    jobs = _jobs()
    arches = {e["arch"] for e in jobs["manylinux"]["strategy"]["matrix"]["include"] if e["backend"] == "cpu"}
    assert arches == {"x86_64", "aarch64"}
    test = jobs["test-cpu-wheel"]
    assert test["needs"] == "manylinux"
    assert "from dmr import _native" in " ".join(step.get("run", "") for step in test["steps"])


def test_every_build_job_uploads_its_wheels() -> None:
    for name, job in _jobs().items():
        if name in ("options", "test-cpu-wheel"):
            continue
        uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
        assert uploads and uploads[0]["with"]["path"].endswith("*.whl"), name
