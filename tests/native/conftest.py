from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dmr import _native as native


@pytest.fixture(scope="session")
def model(smollm2_path: Path) -> Any:
    return native.Model.load(smollm2_path)


@pytest.fixture(scope="session")
def session(model: Any, test_threads: int) -> Any:
    return native.Session.create(model, n_ctx=2048, n_threads=test_threads)
