"""What is resident: one engine per model, loaded on first use, unloaded after its keep-alive, and
admitted under a memory budget.

Contract
- `acquire` returns a ready Runner with its use count raised; `release` lowers it. A runner in use is
  never evicted or unloaded.
- Concurrent first requests for one model wait for the single load (a shared future), and see its
  error if it fails; a failed load leaves nothing resident.
- Admission: before a load the loader estimates the model's memory (weights + KV cells for the
  configured context and slots + a compute allowance) and evicts idle models, least recently used
  first, until it fits the budget. When it cannot fit even then, InsufficientMemoryError (507) - never
  a crash. Unlike DMR (reference §6, issue #1014) memory is planned, not discovered by an OOM.
- Keep-alive: after the last release a timer unloads the model (0 = at once, negative = never).
All methods run on the event loop; loads run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr.engine.protocol import Engine
from dmr.errors import InsufficientMemoryError
from dmr.scheduling.backends import Backend, EngineFactory, load_llama

log = logging.getLogger("dmr.scheduling")


@dataclass
class LoadSpec:
    """Everything needed to load one model."""

    model_id: str
    ref: str
    path: Path
    engine_kwargs: dict[str, Any]
    estimate: int
    keep_alive_s: float
    mode: str = "completion"
    #: the registry entry that runs it (dmr.scheduling.backends); None: the Loader's own factory
    backend: Backend | None = None


@dataclass(eq=False)
class Runner:
    spec: LoadSpec
    ready: asyncio.Future[None]
    engine: Engine | None = None
    in_use: int = 0
    last_used: float = field(default_factory=time.time)
    loaded_at: float = 0.0
    timer: asyncio.TimerHandle | None = None

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def loading(self) -> bool:
        return not self.ready.done()

    def expires_at(self) -> float | None:
        """Wall-clock time of idle unload, None while in use/loading or when kept forever."""
        if self.in_use or self.loading or self.spec.keep_alive_s < 0:
            return None
        return self.last_used + self.spec.keep_alive_s


async def _default_factory(path: Path, kwargs: dict[str, Any]) -> Engine:
    return await load_llama(path, kwargs)


class Loader:
    def __init__(
        self, budget: int, factory: EngineFactory | None = None, on_change: Callable[[], None] | None = None
    ) -> None:
        self.budget = budget
        self.runners: dict[str, Runner] = {}
        self._factory = factory or _default_factory
        self._admit = asyncio.Lock()
        self._on_change = on_change or (lambda: None)
        self.evictions = 0

    # --- use ----------------------------------------------------------------------------------------
    async def acquire(self, spec: LoadSpec) -> Runner:
        while True:
            runner = self.runners.get(spec.model_id)
            if runner is not None:
                if runner.loading:
                    await asyncio.shield(runner.ready)
                    continue
                runner.in_use += 1
                runner.last_used = time.time()
                if runner.timer is not None:
                    runner.timer.cancel()
                    runner.timer = None
                return runner
            async with self._admit:
                if spec.model_id in self.runners:
                    continue
                runner = Runner(spec, asyncio.get_running_loop().create_future())
                self.runners[spec.model_id] = runner
                try:
                    await self._make_room(spec)
                    log.info(
                        "loading %s (%s, estimate %.0f MiB)",
                        spec.ref,
                        spec.model_id[:19],
                        spec.estimate / 2**20,
                    )
                    # a factory given to the Loader (or put in its place) loads everything: tests count or
                    # replace loads that way; otherwise the model's backend loads it
                    own = self._factory is not _default_factory
                    load = spec.backend.load if spec.backend is not None and not own else self._factory
                    runner.engine = await load(spec.path, spec.engine_kwargs)
                except BaseException as exc:
                    del self.runners[spec.model_id]
                    runner.ready.set_exception(
                        exc if isinstance(exc, Exception) else RuntimeError("cancelled")
                    )
                    runner.ready.exception()  # retrieved: waiters re-raise it themselves
                    self._on_change()
                    raise
                runner.loaded_at = time.time()
                runner.ready.set_result(None)
                log.info("loaded %s", spec.ref)
                self._on_change()
            # loop: take a use count like any other caller

    def release(self, runner: Runner) -> None:
        runner.in_use -= 1
        runner.last_used = time.time()
        if runner.in_use > 0 or self.runners.get(runner.model_id) is not runner:
            return
        keep = runner.spec.keep_alive_s
        if keep < 0:
            return
        loop = asyncio.get_running_loop()
        if runner.timer is not None:
            runner.timer.cancel()
        runner.timer = loop.call_later(max(0.0, keep), lambda: loop.create_task(self._expire(runner)))

    async def _expire(self, runner: Runner) -> None:
        if runner.in_use == 0 and self.runners.get(runner.model_id) is runner:
            log.info("keep-alive expired: unloading %s", runner.spec.ref)
            await self.unload(runner)

    # --- memory -------------------------------------------------------------------------------------
    def resident_bytes(self) -> int:
        return sum(r.spec.estimate for r in self.runners.values())

    async def _make_room(self, spec: LoadSpec) -> None:
        if spec.estimate > self.budget:
            raise InsufficientMemoryError(
                f"model {spec.ref} needs about {spec.estimate / 2**20:.0f} MiB (weights + KV cache) but the "
                f"memory budget is {self.budget / 2**20:.0f} MiB; lower the context size or raise "
                "DMR_MEMORY_BUDGET"
            )
        while True:
            others = [r for r in self.runners.values() if r.model_id != spec.model_id]
            used = sum(r.spec.estimate for r in others)
            if used + spec.estimate <= self.budget:
                return
            idle = sorted((r for r in others if r.in_use == 0 and not r.loading), key=lambda r: r.last_used)
            if not idle:
                raise InsufficientMemoryError(
                    f"model {spec.ref} needs about {spec.estimate / 2**20:.0f} MiB; "
                    f"{used / 2**20:.0f} MiB of the {self.budget / 2**20:.0f} MiB budget is held by models "
                    "in use; retry when they are idle"
                )
            log.info("evicting idle %s to make room for %s", idle[0].spec.ref, spec.ref)
            self.evictions += 1
            await self.unload(idle[0])

    # --- unload -------------------------------------------------------------------------------------
    async def unload(self, runner: Runner) -> bool:
        if runner.in_use or runner.loading or self.runners.get(runner.model_id) is not runner:
            return False
        del self.runners[runner.model_id]
        if runner.timer is not None:
            runner.timer.cancel()
        if runner.engine is not None:
            with contextlib.suppress(Exception):
                await runner.engine.close()
        self._on_change()
        return True

    async def close(self) -> None:
        for runner in list(self.runners.values()):
            runner.in_use = 0
            if not runner.loading:
                await self.unload(runner)
