"""Every default and every DMR_* environment variable lives here."""

from __future__ import annotations

import os
from pathlib import Path


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not an integer") from exc


def default_threads() -> int:
    """Physical-ish core count: llama.cpp gains nothing from hyper-threads and loses from oversubscription."""
    n = os.cpu_count() or 1
    return max(1, n if n <= 4 else n // 2)


def models_path() -> Path:
    """Root of the local model store (DMR_MODELS_PATH, default under the user's data dir)."""
    explicit = os.environ.get("DMR_MODELS_PATH")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "dmr" / "models"


#: Context window used when neither the request, the model config nor `configure` says otherwise.
DEFAULT_CONTEXT_SIZE = env_int("DMR_CONTEXT_SIZE", 4096)
#: Logical batch: how many prompt tokens one llama_decode may take.
DEFAULT_N_BATCH = env_int("DMR_N_BATCH", 2048)
#: Physical batch: the largest chunk ggml computes at once.
DEFAULT_N_UBATCH = env_int("DMR_N_UBATCH", 512)
#: Level at which llama.cpp's own log lines reach Python logging ("dmr.llama" logger).
LLAMA_LOG_LEVEL = env_str("DMR_LLAMA_LOG_LEVEL", "WARNING")


def default_registry() -> str:
    """Registry for references without one (DMR_DEFAULT_REGISTRY; DMR's DEFAULT_REGISTRY)."""
    return os.environ.get("DMR_DEFAULT_REGISTRY", "").strip() or "docker.io"


def insecure_registry() -> bool:
    """Talk plain http to every registry (DMR_INSECURE_REGISTRY; DMR's INSECURE_REGISTRY)."""
    return os.environ.get("DMR_INSECURE_REGISTRY", "").strip().lower() in ("1", "true", "yes")
