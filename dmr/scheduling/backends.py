"""The backend registry: which engine runs which artifact format (the shape of Docker Model Runner's
`backends` map). The scheduler picks a model's backend here by its format; `/engines/status`, `/engines/ps`
and `dmr status` report from here. In-process llama.cpp is the first entry; vLLM is listed, not installed,
until its subprocess engine lands (see the engines issue).

A backend states what it runs (`formats`), how much memory a model will take (`estimate_memory`), which
runtime flags it accepts (its own allow-list, a FlagTable: `_configure` and every load check flags by it),
how an engine is made (`load`) and its status line ("Running: ..." / "Not Installed: ..."), as DMR
prints it."""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr.engine.protocol import Engine
from dmr.errors import BackendNotInstalledError
from dmr.scheduling.gguf_memory import estimate_memory
from dmr.scheduling.llama_flags import LLAMA_FLAGS, FlagTable

EngineFactory = Callable[[Path, dict[str, Any]], Awaitable[Engine]]


@dataclass(frozen=True)
class Backend:
    name: str
    formats: frozenset[str]
    load: EngineFactory
    estimate_memory: Callable[[Path, int], int]
    status: Callable[[], str]
    runtime_flags: FlagTable = field(default_factory=FlagTable)  # accepts none unless it says so
    installed: bool = True


class BackendRegistry:
    """Backends in order of preference: the first installed one that runs a format is chosen for it."""

    def __init__(self, backends: Iterable[Backend] = ()) -> None:
        self._backends: dict[str, Backend] = {}
        for backend in backends:
            self.register(backend)

    def register(self, backend: Backend) -> None:
        self._backends[backend.name] = backend

    def names(self) -> list[str]:
        return list(self._backends)

    def all(self) -> list[Backend]:
        return list(self._backends.values())

    def get(self, name: str) -> Backend | None:
        return self._backends.get(name)

    def for_format(self, fmt: str, model: str) -> Backend:
        """The backend that runs `fmt`; BackendNotInstalledError (a 4xx naming what is missing) if none is
        installed."""
        candidates = [b for b in self._backends.values() if fmt in b.formats]
        for backend in candidates:
            if backend.installed:
                return backend
        if candidates:
            names = " or ".join(b.name for b in candidates)
            raise BackendNotInstalledError(
                f"model {model} is a {fmt} model, which the {names} backend runs; it is not installed here "
                f"(installed: {', '.join(self.installed_names()) or 'none'})",
                backend=candidates[0].name,
            )
        raise BackendNotInstalledError(
            f"model {model} is in {fmt or 'an unknown'} format, which no backend runs "
            f"(installed: {', '.join(self.installed_names()) or 'none'})",
            backend=None,
        )

    def installed_names(self) -> list[str]:
        return [b.name for b in self._backends.values() if b.installed]

    def status(self) -> dict[str, str]:
        return {b.name: b.status() for b in self._backends.values()}


async def load_llama(path: Path, kwargs: dict[str, Any]) -> Engine:
    from dmr.engine.llama import EngineConfig, LlamaEngine

    return await LlamaEngine.load(path, EngineConfig(**kwargs))


def engine_description() -> str:
    import dmr

    return f"in-process llama.cpp (dmr {dmr.__version__})"


def engine_info() -> dict[str, Any]:
    """The llama.cpp build facts (`/version`'s extra fields, `dmr version`): the llama.cpp source the module
    was built from, the compiled backend and the ggml devices, and a notice when a GPU build runs on the CPU.
    Loads the engine module, which only a server that is about to run models anyway should do."""
    try:
        from dmr.engine.llama import build_info
    except ImportError:  # a source checkout without the compiled module
        return {"llama.cpp": "unknown", "backend": "unknown", "devices": []}
    return build_info()


def _llama_status() -> str:
    if importlib.util.find_spec("dmr._native") is None:  # a source checkout without the compiled module
        return f"Not Installed: {engine_description()} has no compiled engine module"
    notice = engine_info().get("notice")
    return f"Running: {engine_description()}" + (f"; {notice}" if notice else "")


def llama_backend() -> Backend:
    return Backend("llama.cpp", frozenset({"gguf"}), load_llama, estimate_memory, _llama_status, LLAMA_FLAGS)


async def _not_installed(path: Path, kwargs: dict[str, Any]) -> Engine:
    raise BackendNotInstalledError("the vllm backend is not installed", backend="vllm")


def vllm_placeholder() -> Backend:
    """vLLM as DMR lists it where it cannot run: known, not installed."""
    return Backend(
        "vllm",
        frozenset({"safetensors"}),
        _not_installed,
        lambda path, n_ctx: 0,
        lambda: "Not Installed: dmr has no vLLM engine yet",
        installed=False,
    )


def default_registry() -> BackendRegistry:
    return BackendRegistry([llama_backend(), vllm_placeholder()])
