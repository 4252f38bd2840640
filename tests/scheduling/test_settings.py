"""Fast tier: the scheduler's defaults are its own settings, not module globals mutated at run time."""

from __future__ import annotations

from pathlib import Path

import pytest
from server.fake_server import MODEL, write_tiny_gguf

from dmr import config
from dmr.models.package import package
from dmr.models.store import Store
from dmr.scheduling.scheduler import Scheduler

pytestmark = pytest.mark.fast


async def test_context_size_setting_reaches_the_load_and_leaves_the_module_default(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    package(store, gguf=write_tiny_gguf(tmp_path / "m.gguf", ctx=8192), created=1, tags=[MODEL])
    before = config.DEFAULT_CONTEXT_SIZE
    a = Scheduler(store, state_path=tmp_path / "a.json", n_slots=2, context_size=1234)
    b = Scheduler(store, state_path=tmp_path / "b.json", n_slots=2)
    model = await a.resolve(MODEL)
    assert (await a._spec(model, MODEL)).engine_kwargs["n_ctx"] == 2 * 1234
    assert (await b._spec(model, MODEL)).engine_kwargs["n_ctx"] == 2 * min(before, 8192)
    assert before == config.DEFAULT_CONTEXT_SIZE
