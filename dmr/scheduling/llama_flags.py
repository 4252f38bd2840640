"""Runtime flags (`_configure`'s `runtime-flags`): a backend's allow-list as a FlagTable, and the llama.cpp
backend's own (llama-server's names)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dmr.engine.protocol import SAMPLING_RANGES
from dmr.errors import InvalidRequestError


@dataclass(frozen=True)
class FlagTable:
    """What one backend accepts. `values`: flag -> (engine field, or "sampling:<param>" for a default
    sampling parameter, and the value's type); `switches`: flag -> (engine field, value); `noops`: accepted
    and without effect. Everything else is refused, naming the backend."""

    backend: str = ""
    values: Mapping[str, tuple[str, type]] = field(default_factory=dict)
    switches: Mapping[str, tuple[str, Any]] = field(default_factory=dict)
    noops: frozenset[str] = frozenset()
    #: target -> (lowest, highest) a value may take; values outside are refused before anything is saved
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    #: target -> the words a value must be one of
    choices: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def parse(self, flags: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """flags -> (engine overrides, default sampling params); InvalidRequestError (400) otherwise."""
        engine: dict[str, Any] = {}
        sampling: dict[str, Any] = {}
        by = f" by the {self.backend} backend" if self.backend else ""
        i = 0
        while i < len(flags):
            flag = flags[i]
            if not isinstance(flag, str):
                raise InvalidRequestError("runtime flags must be strings")
            if "/" in flag or "\\" in flag:
                raise InvalidRequestError(f"runtime flag {flag!r} may not contain a path")
            name, eq, inline = flag.partition("=")
            if name in self.noops:
                i += 1
                continue
            if name in self.switches and not eq:
                target, value = self.switches[name]
                engine[target] = value
                i += 1
                continue
            if name not in self.values:
                raise InvalidRequestError(f"runtime flag {name!r} is not allowed{by}")
            target, typ = self.values[name]
            if eq:
                raw = inline
            elif i + 1 < len(flags):
                i += 1
                raw = flags[i]
            else:
                raise InvalidRequestError(f"runtime flag {name!r} needs a value")
            try:
                value = typ(raw)
            except ValueError as exc:
                raise InvalidRequestError(
                    f"runtime flag {name!r}: {raw!r} is not a valid {typ.__name__}"
                ) from exc
            self._check(name, target, value)
            if target.startswith("sampling:"):
                sampling[target.removeprefix("sampling:")] = value
            else:
                engine[target] = value
            i += 1
        return engine, sampling

    def _check(self, flag: str, target: str, value: Any) -> None:
        if target in self.limits:
            lo, hi = self.limits[target]
            if not lo <= value <= hi:
                raise InvalidRequestError(
                    f"runtime flag {flag!r} must be between {lo:g} and {hi:g}, got {value}"
                )
        if target in self.choices and value not in self.choices[target]:
            allowed = ", ".join(sorted(self.choices[target]))
            raise InvalidRequestError(f"runtime flag {flag!r} must be one of {allowed}, got {value!r}")


#: llama-server flag -> (EngineConfig field or "sampling:<param>", type). Everything else is refused.
RUNTIME_FLAGS: dict[str, tuple[str, type]] = {
    "-t": ("n_threads", int),
    "--threads": ("n_threads", int),
    "-tb": ("n_threads_batch", int),
    "--threads-batch": ("n_threads_batch", int),
    "-ngl": ("n_gpu_layers", int),
    "--gpu-layers": ("n_gpu_layers", int),
    "--n-gpu-layers": ("n_gpu_layers", int),
    "-b": ("n_batch", int),
    "--batch-size": ("n_batch", int),
    "-ub": ("n_ubatch", int),
    "--ubatch-size": ("n_ubatch", int),
    "-np": ("n_slots", int),
    "--parallel": ("n_slots", int),
    "-c": ("ctx_size", int),
    "--ctx-size": ("ctx_size", int),
    "-fa": ("flash_attn", str),
    "--flash-attn": ("flash_attn", str),
    "--spec-draft-n-max": ("spec_n_max", int),
    "--draft-max": ("spec_n_max", int),
    "--repeat-penalty": ("sampling:repeat_penalty", float),
    "--repeat-last-n": ("sampling:penalty_last_n", int),
    "--temp": ("sampling:temperature", float),
    "--temperature": ("sampling:temperature", float),
    "--top-k": ("sampling:top_k", int),
    "--top-p": ("sampling:top_p", float),
    "--min-p": ("sampling:min_p", float),
    "--presence-penalty": ("sampling:presence_penalty", float),
    "--frequency-penalty": ("sampling:frequency_penalty", float),
}
#: Switches without a value: flag -> (EngineConfig field, value).
SWITCH_FLAGS: dict[str, tuple[str, Any]] = {
    "-kvu": ("kv_unified", True),
    "--kv-unified": ("kv_unified", True),
    "--no-kv-unified": ("kv_unified", False),
}
#: Accepted and without effect here (always on, or decided elsewhere).
NOOP_FLAGS = {"--jinja", "--metrics", "-cb", "--cont-batching", "--no-webui", "--mlock", "--no-mmap"}

#: Threads beyond the machine's cores only spin (-t 5000 started 5,000 threads; -t 100000 crashed the load).
MAX_THREADS = os.cpu_count() or 1
#: Below this llama.cpp aborts (-b 1 -ub 1) or crawls; llama-server's defaults are 2048 and 512.
MIN_BATCH = 32
#: What the engine settings may be. Sampling defaults obey the same ranges as a request's fields.
ENGINE_LIMITS: dict[str, tuple[float, float]] = {
    "n_threads": (1, MAX_THREADS),
    "n_threads_batch": (1, MAX_THREADS),
    "n_gpu_layers": (-1, 100_000),  # -1: all
    "n_batch": (MIN_BATCH, 1 << 16),
    "n_ubatch": (MIN_BATCH, 1 << 13),  # llama.cpp sizes its compute buffers by it
    "n_slots": (1, 256),
    "ctx_size": (0, 1 << 24),  # 0: the model's own
    "spec_n_max": (0, 64),
    **{f"sampling:{name}": bounds for name, bounds in SAMPLING_RANGES.items()},
}

LLAMA_FLAGS = FlagTable(
    "llama.cpp",
    RUNTIME_FLAGS,
    SWITCH_FLAGS,
    frozenset(NOOP_FLAGS),
    ENGINE_LIMITS,
    {"flash_attn": frozenset({"on", "off", "auto", "enabled", "disabled"})},
)
