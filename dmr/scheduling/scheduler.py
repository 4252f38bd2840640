"""The server's view of models: resolve a reference in the store, apply its configuration, hand out a
loaded engine (through the Loader), and keep `_configure` settings on disk.

Configuration (POST /engines/_configure) is per model ID and, unlike DMR (issues #726, #223), persisted
in `dmr.config.state_path()` so it survives restarts and idle unloads. Runtime flags are llama-server
flags validated against an allow-list and mapped onto EngineConfig; a flag we cannot honour is a 400,
never silently ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shlex
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dmr import config
from dmr.errors import DmrError, InvalidRequestError, ModelBusyError, StoreError
from dmr.models.store import Model, Store
from dmr.scheduling.backends import BackendRegistry, default_registry
from dmr.scheduling.llama_flags import LLAMA_FLAGS, FlagTable
from dmr.scheduling.loader import Loader, LoadSpec, Runner

log = logging.getLogger("dmr.scheduling")

MODES = ("completion", "embedding", "reranking")

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Any) -> float:
    """DMR/Ollama keep_alive: Go duration ("5m", "1h30m", "5m0s"), seconds as a number, "0", "-1"."""
    if isinstance(value, bool):
        raise InvalidRequestError("keep_alive must be a duration like '5m', '0' or '-1'")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError("keep_alive must be a duration like '5m', '0' or '-1'")
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    try:
        return sign * float(body)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(body) or not body:
        raise InvalidRequestError(f"invalid keep_alive duration {value!r}")
    return sign * total


def format_keep_alive(seconds: float) -> str:
    """Go's time.Duration String for whole seconds ("5m0s"), "-1" for never."""
    if seconds < 0:
        return "-1"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def parse_runtime_flags(
    flags: list[str], table: FlagTable = LLAMA_FLAGS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runtime flags -> (engine overrides, default sampling params), by a backend's allow-list."""
    return table.parse(flags)


@dataclass
class RunnerConfig:
    """One model's `_configure` settings (DMR's BackendConfiguration, plus the persisted keep-alive)."""

    context_size: int | None = None
    runtime_flags: list[str] = field(default_factory=list)
    speculative: dict[str, Any] | None = None
    keep_alive: str | None = None
    mode: str | None = None
    reasoning_budget: int | None = None

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.context_size is not None:
            out["context-size"] = self.context_size
        if self.runtime_flags:
            out["runtime-flags"] = list(self.runtime_flags)
        if self.speculative:
            out["speculative"] = self.speculative
        if self.keep_alive is not None:
            out["keep_alive"] = self.keep_alive
        if self.mode:
            out["mode"] = self.mode
        if self.reasoning_budget is not None:
            out["llamacpp"] = {"reasoning-budget": self.reasoning_budget}
        return out


def config_from_request(body: dict[str, Any], flags_table: FlagTable = LLAMA_FLAGS) -> RunnerConfig:
    """Validate a `_configure` body (DMR's field names) into a RunnerConfig; runtime flags by the allow-list
    of the backend that will run the model."""
    cfg = RunnerConfig()
    ctx = body.get("context-size", body.get("context_size"))
    if ctx is not None:
        if not isinstance(ctx, int) or isinstance(ctx, bool) or not (-1 <= ctx < 2**31):
            raise InvalidRequestError("context-size must be an int32")
        cfg.context_size = ctx if ctx > 0 else None
    flags = body.get("runtime-flags")
    raw_flags = body.get("raw-runtime-flags")
    if flags is not None:
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise InvalidRequestError("runtime-flags must be a list of strings")
        cfg.runtime_flags = list(flags)
    elif raw_flags is not None:
        if not isinstance(raw_flags, str):
            raise InvalidRequestError("raw-runtime-flags must be a string")
        try:
            cfg.runtime_flags = shlex.split(raw_flags)
        except ValueError as exc:
            raise InvalidRequestError(f"raw-runtime-flags: {exc}") from exc
    flags_table.parse(cfg.runtime_flags)  # validate now: a 400 here beats a failed load later
    spec = body.get("speculative")
    if spec is not None:
        if not isinstance(spec, dict):
            raise InvalidRequestError("speculative must be an object")
        cfg.speculative = {
            k: spec[k] for k in ("draft_model", "num_tokens", "min_acceptance_rate") if k in spec
        }
        _check_speculative(cfg.speculative)
    keep = body.get("keep_alive")
    if keep is not None:
        parse_keep_alive(keep)
        cfg.keep_alive = str(keep)
    mode = body.get("mode")
    if mode is not None:
        if mode not in MODES:
            raise InvalidRequestError(f"mode must be one of {', '.join(MODES)}")
        cfg.mode = mode
    llamacpp = body.get("llamacpp")
    if isinstance(llamacpp, dict) and "reasoning-budget" in llamacpp:
        rb = llamacpp["reasoning-budget"]
        if not isinstance(rb, int) or isinstance(rb, bool):
            raise InvalidRequestError("llamacpp.reasoning-budget must be an integer")
        cfg.reasoning_budget = rb
    return cfg


def _check_speculative(spec: dict[str, Any]) -> None:
    draft = spec.get("draft_model")
    if draft is not None and (not isinstance(draft, str) or not draft):
        raise InvalidRequestError("speculative.draft_model must be a model reference")
    n = spec.get("num_tokens")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 64):
        raise InvalidRequestError("speculative.num_tokens must be an integer between 0 and 64")
    rate = spec.get("min_acceptance_rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1
    ):
        raise InvalidRequestError("speculative.min_acceptance_rate must be a number between 0 and 1")


class ConfigStore:
    """model ID -> RunnerConfig, written atomically to one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.configs: dict[str, tuple[str, RunnerConfig]] = {}
        self.revision = 0  # counts changes (the model listing's cache key)
        try:
            doc = json.loads(path.read_text())
            for model_id, entry in doc.get("models", {}).items():
                fields = {
                    k: v for k, v in entry.get("config", {}).items() if k in RunnerConfig.__dataclass_fields__
                }
                self.configs[model_id] = (entry.get("model", model_id), RunnerConfig(**fields))
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable runtime config %s: %s", path, exc)

    def get(self, model_id: str) -> RunnerConfig:
        entry = self.configs.get(model_id)
        return entry[1] if entry else RunnerConfig()

    def set(self, model_id: str, ref: str, cfg: RunnerConfig) -> None:
        self.configs[model_id] = (ref, cfg)
        self.revision += 1
        self._save()

    def entry(self, model_id: str) -> tuple[str, RunnerConfig] | None:
        return self.configs.get(model_id)

    def put(self, model_id: str, entry: tuple[str, RunnerConfig] | None) -> None:
        """In memory only (a trial before `save`); None forgets the model's settings."""
        self.revision += 1
        if entry is None:
            self.configs.pop(model_id, None)
        else:
            self.configs[model_id] = entry

    def save(self) -> None:
        self._save()

    def drop(self, model_id: str) -> None:
        self.revision += 1
        if self.configs.pop(model_id, None) is not None:
            self._save()

    def _save(self) -> None:
        from dmr.models.store import atomic_write

        doc = {
            "models": {mid: {"model": ref, "config": asdict(cfg)} for mid, (ref, cfg) in self.configs.items()}
        }
        atomic_write(self.path, json.dumps(doc, indent=2).encode())


class Scheduler:
    def __init__(
        self,
        store: Store,
        *,
        budget: int | None = None,
        state_path: Path | None = None,
        keep_alive_s: float | None = None,
        n_slots: int | None = None,
        engine_defaults: dict[str, Any] | None = None,
        loader: Loader | None = None,
        backends: BackendRegistry | None = None,
        context_size: int | None = None,
    ) -> None:
        """context_size: tokens per sequence for models whose configuration sets none (`dmr serve
        --context-size`, else DMR_CONTEXT_SIZE)."""
        self.store = store
        self.backends = backends or default_registry()
        self.loader = loader or Loader(config.memory_budget() if budget is None else budget)
        self.configs = ConfigStore(state_path or config.state_path())
        self.default_keep_alive = float(config.DEFAULT_KEEP_ALIVE_S if keep_alive_s is None else keep_alive_s)
        self.n_slots = n_slots or config.DEFAULT_N_SLOTS
        self.engine_defaults = dict(engine_defaults or {})
        self.default_context_size = context_size or config.DEFAULT_CONTEXT_SIZE

    async def resolve(self, ref: str) -> Model:
        """The stored model `ref` names (404 ModelNotFoundError; 400 for an unparsable reference)."""
        return await asyncio.to_thread(self.store.get, ref)

    def sampling_defaults(self, model_id: str) -> dict[str, Any]:
        """The default sampling parameters the model's runtime flags set, by its loaded backend's table."""
        runner = self.loader.runners.get(model_id)
        backend = runner.spec.backend if runner is not None else None
        table = backend.runtime_flags if backend is not None else LLAMA_FLAGS
        return table.parse(self.configs.get(model_id).runtime_flags)[1]

    def runner_config(self, model_id: str) -> RunnerConfig:
        return self.configs.get(model_id)

    async def _spec(self, model: Model, ref: str) -> LoadSpec:
        from dmr.models.bundle import model_path

        backend = self.backends.for_format(str(model.config.get("format", "gguf")), ref)
        cfg = self.configs.get(model.id)
        overrides, _ = backend.runtime_flags.parse(cfg.runtime_flags)
        kwargs: dict[str, Any] = dict(self.engine_defaults)
        n_slots = int(overrides.pop("n_slots", kwargs.pop("n_slots", self.n_slots)))
        per_slot = self._per_slot_context(model, cfg, overrides.pop("ctx_size", None), n_slots)
        kwargs.update(overrides)
        kwargs["n_slots"] = max(1, n_slots)
        kwargs["n_ctx"] = per_slot * kwargs["n_slots"]
        spec = cfg.speculative or {}
        if spec.get("draft_model"):
            draft = await self.resolve(str(spec["draft_model"]))
            kwargs["speculative"] = "draft"
            kwargs["draft_model"] = str(await asyncio.to_thread(model_path, self.store, draft.id))
        elif spec:
            kwargs["speculative"] = "ngram"
        if spec.get("num_tokens"):
            kwargs["spec_n_max"] = int(spec["num_tokens"])
        if spec.get("min_acceptance_rate") is not None:
            kwargs["spec_min_acceptance"] = float(spec["min_acceptance_rate"])
        path = await asyncio.to_thread(model_path, self.store, model.id)
        estimate = await asyncio.to_thread(backend.estimate_memory, path, kwargs["n_ctx"])
        keep = parse_keep_alive(cfg.keep_alive) if cfg.keep_alive is not None else self.default_keep_alive
        return LoadSpec(model.id, ref, path, kwargs, estimate, keep, cfg.mode or "completion", backend)

    def _per_slot_context(self, model: Model, cfg: RunnerConfig, flag_ctx: Any, n_slots: int) -> int:
        """The context one request gets: `_configure`'s, else the -c flag's share, else the default,
        never more than the model was trained for."""
        per_slot = int(
            cfg.context_size or (int(flag_ctx) // n_slots if flag_ctx else None) or self.default_context_size
        )
        train_ctx = model.config.get("gguf", {}).get(f"{model.config.get('architecture', '')}.context_length")
        with contextlib.suppress(TypeError, ValueError):
            if train_ctx is not None:
                per_slot = min(per_slot, int(train_ctx))
        return per_slot

    def context_revision(self) -> int:
        """Changes whenever request_context may answer differently (settings, loads, unloads)."""
        loaded = tuple(
            sorted(
                (mid, int(r.engine.n_ctx) if r.engine is not None else -1)
                for mid, r in self.loader.runners.items()
            )
        )
        return hash((self.configs.revision, loaded))

    def request_context(self, model: Model) -> int:
        """The context a request to `model` can use: the loaded runner's, else what a load would give."""
        runner = self.loader.runners.get(model.id)
        engine = runner.engine if runner is not None else None
        if engine is not None:
            return int(engine.n_ctx)
        cfg = self.configs.get(model.id)
        try:
            overrides, _ = self.backends.for_format(
                str(model.config.get("format", "gguf")), model.id
            ).runtime_flags.parse(cfg.runtime_flags)
        except DmrError:
            overrides = {}
        n_slots = int(overrides.get("n_slots", self.engine_defaults.get("n_slots", self.n_slots)))
        return self._per_slot_context(model, cfg, overrides.get("ctx_size"), max(1, n_slots))

    @contextlib.asynccontextmanager
    async def use(self, ref: str) -> AsyncIterator[tuple[Model, Runner]]:
        """The model `ref` names, loaded, held in use for the block."""
        model = await self.resolve(ref)
        runner = await self.acquire(model, ref)
        try:
            yield model, runner
        finally:
            self.loader.release(runner)

    async def acquire(self, model: Model, ref: str) -> Runner:
        runner = self.loader.runners.get(model.id)
        if runner is not None and not runner.loading:
            return await self.loader.acquire(runner.spec)
        return await self.loader.acquire(await self._spec(model, ref))

    def release(self, runner: Runner) -> None:
        """The end of one use that `acquire` began."""
        self.loader.release(runner)

    def runner(self, model_id: str) -> Runner | None:
        """The resident (or loading) runner of a model, if any."""
        return self.loader.runners.get(model_id)

    def runners(self) -> list[Runner]:
        return list(self.loader.runners.values())

    async def unload_runner(self, runner: Runner) -> bool:
        """Unload it now if it is idle; False when it is in use, loading, or already gone."""
        return await self.loader.unload(runner)

    def saved_configs(self) -> list[tuple[str, str, RunnerConfig]]:
        """(model ID, reference, settings) of every model `_configure` has settings for."""
        return [(model_id, ref, cfg) for model_id, (ref, cfg) in self.configs.configs.items()]

    async def preload(self, ref: str) -> None:
        async with self.use(ref):
            pass

    async def configure(self, body: dict[str, Any]) -> tuple[Model, RunnerConfig]:
        ref = body.get("model")
        if not isinstance(ref, str) or not ref:
            raise InvalidRequestError("model is required")
        model = await self.resolve(ref)
        backend = self.backends.for_format(str(model.config.get("format", "gguf")), ref)
        cfg = config_from_request(body, backend.runtime_flags)
        runner = self.loader.runners.get(model.id)
        if runner is not None:
            if runner.in_use or runner.loading:
                if asdict(self.configs.get(model.id)) != asdict(cfg):
                    raise ModelBusyError("runner already active")
            else:
                await self.loader.unload(runner)
        if runner is not None and (runner.in_use or runner.loading):
            return model, cfg  # the same settings the active runner already has
        # The settings are tried before they are kept: one that crashes or wedges the load must not be saved
        # (it would repeat after every restart), and one that fails is not left live in memory either.
        previous = self.configs.entry(model.id)
        self.configs.put(model.id, (ref, cfg))
        try:
            await self.preload(ref)
        except BaseException as exc:
            self.configs.put(model.id, previous)
            if isinstance(exc, DmrError) and exc.http_status < 500:
                raise
            if isinstance(exc, Exception):  # engine failures, and settings that do not fit in memory
                raise InvalidRequestError(f"{ref} does not load with these settings: {exc}") from exc
            raise
        try:
            await asyncio.to_thread(self.configs.save)
        except OSError as exc:
            # Memory and disk stay in step: the runner that loaded with unsaved settings goes too.
            self.configs.put(model.id, previous)
            loaded = self.loader.runners.get(model.id)
            if loaded is not None:
                await self.loader.unload(loaded)
            raise StoreError(exc.errno or 0, f"the settings for {ref} could not be saved: {exc}") from exc
        return model, cfg

    async def unload(self, *, all_models: bool = False, models: list[str] | None = None) -> int:
        targets: list[Runner] = []
        if all_models:
            targets = list(self.loader.runners.values())
        else:
            for ref in models or []:
                with contextlib.suppress(Exception):
                    model = await self.resolve(ref)
                    if model.id in self.loader.runners:
                        targets.append(self.loader.runners[model.id])
        n = 0
        for runner in targets:
            if await self.loader.unload(runner):
                n += 1
        return n

    def ps(self) -> list[dict[str, Any]]:
        out = []
        for r in self.loader.runners.values():
            out.append(
                {
                    "backend_name": r.spec.backend.name if r.spec.backend is not None else "llama.cpp",
                    "model_name": r.spec.ref,
                    "mode": r.spec.mode,
                    "last_used": _rfc3339(r.last_used) if not r.in_use else "0001-01-01T00:00:00Z",
                    "in_use": r.in_use > 0,
                    "loading": r.loading,
                    "keep_alive": format_keep_alive(r.spec.keep_alive_s),
                    "until": r.expires_at(),
                    "memory_estimate": r.spec.estimate,
                }
            )
        return out

    async def close(self) -> None:
        await self.loader.close()


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
