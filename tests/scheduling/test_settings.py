"""Fast tier: the scheduler's defaults are its own settings, not module globals mutated at run time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from server.fake_server import MODEL, write_tiny_gguf

from dmr import config
from dmr.cli.main import cli
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


def test_serve_settings_take_flags_over_environment_over_defaults(tmp_path: Path) -> None:
    env = {
        "DMR_PORT": "2000",
        "DMR_CONTEXT_SIZE": "777",
        "DMR_KEEP_ALIVE": "1m",
        "DMR_MEMORY_BUDGET": "2G",
        "DMR_ORIGINS": "http://a.test, http://b.test",
        "DMR_MODELS_PATH": str(tmp_path / "env-store"),
    }
    from_env = config.ServeSettings.resolve({}, env)
    assert (from_env.port, from_env.context_size, from_env.keep_alive_s) == (2000, 777, 60.0)
    assert from_env.memory_budget == 2 << 30 and from_env.origins == ("http://a.test", "http://b.test")
    assert from_env.state_path == tmp_path / "runtime-config.json"
    flags = {"port": 3000, "context_size": 555, "keep_alive": "-1", "models_path": str(tmp_path / "s")}
    given = config.ServeSettings.resolve(flags, env)
    assert (given.port, given.context_size, given.keep_alive_s) == (3000, 555, -1.0)
    assert given.models_path == tmp_path / "s"
    defaults = config.ServeSettings.resolve({}, {"HOME": str(tmp_path)})
    assert (defaults.host, defaults.port, defaults.context_size, defaults.parallel) == (
        "127.0.0.1",
        12434,
        4096,
        4,
    )
    assert defaults.api_key is None and defaults.origins == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.port = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="context-size must be a positive number"):
        config.ServeSettings.resolve({"context_size": 0}, {})
    with pytest.raises(ValueError, match="parallel 'x' is not an integer"):
        config.ServeSettings.resolve({}, {"DMR_PARALLEL": "x"})
    url_host = config.ServeSettings.resolve({}, {"DMR_HOST": "http://0.0.0.0:8080"})
    assert (url_host.host, url_host.port) == ("0.0.0.0", 8080)


def test_dmr_serve_passes_its_settings_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.setenv("DMR_CONTEXT_SIZE", "999")
    monkeypatch.setenv("DMR_PORT", "2345")
    monkeypatch.setenv("DMR_STATE_PATH", str(tmp_path / "state.json"))
    monkeypatch.setenv("DMR_LOG_DIR", str(tmp_path / "logs"))
    args = ["serve", "--models-path", str(tmp_path / "store"), "--parallel", "3", "--keep-alive", "10s"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    state = seen["app"].state.dmr
    assert seen["port"] == 2345 and seen["host"] == "127.0.0.1"
    assert state.scheduler.default_context_size == 999 and state.scheduler.n_slots == 3
    assert state.scheduler.default_keep_alive == 10.0
    assert state.store.root == tmp_path / "store"
    bad = CliRunner().invoke(cli, ["serve", "--context-size", "0", "--models-path", str(tmp_path / "store")])
    assert bad.exit_code != 0 and "context-size must be a positive number" in bad.output
