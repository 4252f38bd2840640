"""Fast tier: `_configure` only keeps settings the model loads with (issue #17, finding 4). Each refused
setting used to be saved first and then crash, wedge or break every later load, after restarts too."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from dmr.errors import EngineError
from dmr.scheduling.llama_flags import MAX_THREADS

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

CONFIGURE = "/engines/_configure"
HELLO = [{"role": "user", "content": "Hi"}]


async def _saved(fake: FakeServer) -> Any:
    return (await fake.client.get(CONFIGURE)).json()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"runtime-flags": ["-t", "100000"]}, f"'-t' must be between 1 and {MAX_THREADS}"),
        ({"runtime-flags": ["--threads", "5000"]}, "'--threads' must be between 1 and"),
        ({"runtime-flags": ["-t", "0"]}, "'-t' must be between 1 and"),
        ({"runtime-flags": ["-b", "1", "-ub", "1"]}, "'-b' must be between 32 and"),
        ({"runtime-flags": ["-ub", "1"]}, "'-ub' must be between 32 and"),
        ({"runtime-flags": ["-b", "-1"]}, "'-b' must be between 32 and"),
        ({"runtime-flags": ["-c", "-100"]}, "'-c' must be between 0 and"),
        ({"runtime-flags": ["--temp", "-5"]}, "'--temp' must be between 0 and 100, got -5.0"),
        ({"runtime-flags": ["--top-p", "3"]}, "'--top-p' must be between 0 and 1"),
        # accepted, it made every later chat a 400 (found by test_fuzz_hardening.py)
        ({"runtime-flags": ["--repeat-penalty", "0"]}, "'--repeat-penalty' must be between 0.01 and 10"),
        ({"runtime-flags": ["-fa", "sometimes"]}, "'-fa' must be one of auto, disabled, enabled, off, on"),
        ({"runtime-flags": ["-np", "0"]}, "'-np' must be between 1 and 256"),
        ({"speculative": {"num_tokens": -3}}, "speculative.num_tokens must be an integer between 0 and 64"),
        ({"speculative": {"min_acceptance_rate": 7}}, "min_acceptance_rate must be a number between 0 and 1"),
        ({"speculative": {"draft_model": 5}}, "speculative.draft_model must be a model reference"),
    ],
)
async def test_settings_outside_what_the_engine_takes_are_refused_and_not_saved(
    fake: FakeServer, body: dict[str, Any], words: str
) -> None:
    before = await _saved(fake)
    r = await fake.client.post(CONFIGURE, json={"model": MODEL, **body})
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"], r.json()
    assert await _saved(fake) == before
    assert not fake.load_kwargs  # nothing was even tried


async def test_a_draft_model_that_does_not_exist_is_refused_and_not_saved(fake: FakeServer) -> None:
    r = await fake.client.post(
        CONFIGURE, json={"model": MODEL, "speculative": {"draft_model": "ai/nothing-here"}}
    )
    assert r.status_code == 404 and "ai/nothing-here" in r.json()["error"]["message"], r.text
    assert await _saved(fake) == []
    chat = await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert chat.status_code == 200  # the model still loads, with its old settings


async def test_settings_the_model_does_not_load_with_are_refused_and_the_old_ones_stay(
    fake: FakeServer,
) -> None:
    ok = await fake.client.post(CONFIGURE, json={"model": MODEL, "runtime-flags": ["--temp", "0.3"]})
    assert ok.status_code == 202, ok.text
    assert fake.load_kwargs, "the settings are tried by loading the model before they are kept"
    good = await _saved(fake)
    state_file = Path(fake.scheduler.configs.path).read_text()

    fake.load_error = EngineError("the model's context could not be created")
    r = await fake.client.post(
        CONFIGURE, json={"model": MODEL, "runtime-flags": ["-b", "64", "--temp", "0.9"]}
    )
    assert r.status_code == 400, r.text
    assert "does not load with these settings" in r.json()["error"]["message"]
    assert "context could not be created" in r.json()["error"]["message"]
    assert await _saved(fake) == good  # in memory
    assert Path(fake.scheduler.configs.path).read_text() == state_file  # on disk

    fake.load_error = None
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert fake.load_kwargs[-1].get("n_batch") is None  # the next load used the settings that were kept
    assert fake.engines[-1].params[-1].temperature == pytest.approx(0.3)


async def test_a_full_disk_keeps_memory_and_disk_in_step(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dmr.models.store as store_module

    ok = await fake.client.post(CONFIGURE, json={"model": MODEL, "runtime-flags": ["--temp", "0.3"]})
    assert ok.status_code == 202
    good = await _saved(fake)

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module, "atomic_write", full)
    r = await fake.client.post(CONFIGURE, json={"model": MODEL, "runtime-flags": ["--temp", "0.9"]})
    assert r.status_code == 507, r.text
    assert "could not be saved" in r.json()["error"]["message"]
    assert await _saved(fake) == good
    # the runner that loaded with the unsaved settings is gone: the next request gets the saved ones
    assert fake.scheduler.runners() == []
    monkeypatch.undo()
    await fake.client.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert fake.engines[-1].params[-1].temperature == pytest.approx(0.3)
