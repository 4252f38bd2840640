"""Every default and every DMR_* environment variable lives here."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (1/0, true/false)")


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


# --- built-in defaults: each named once; the DEFAULT_* below and ServeSettings.resolve read them -------
BUILTIN_CONTEXT_SIZE = 4096
BUILTIN_PORT = 12434  # DMR's (MODEL_RUNNER_PORT upstream)
BUILTIN_MAX_BODY = 10 << 20  # DMR: 10 MiB for inference
BUILTIN_KEEP_ALIVE_S = 300.0  # DMR's 5 minutes
BUILTIN_N_SLOTS = 4

#: Context window used when neither the request, the model config nor `configure` says otherwise.
DEFAULT_CONTEXT_SIZE = env_int("DMR_CONTEXT_SIZE", BUILTIN_CONTEXT_SIZE)
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


# --- server (dmr serve) -------------------------------------------------------------------------------

#: Bind address: loopback by default (DMR's container maps 127.0.0.1:12434); DMR_HOST=0.0.0.0 for LAN.
DEFAULT_HOST = env_str("DMR_HOST", "127.0.0.1")
#: DMR's port (MODEL_RUNNER_PORT upstream).
DEFAULT_PORT = env_int("DMR_PORT", BUILTIN_PORT)
#: Largest request body accepted on any route but /models/load (DMR: 10 MiB for inference).
MAX_BODY_BYTES = env_int("DMR_MAX_BODY", BUILTIN_MAX_BODY)


def _keep_alive_seconds(text: str | None, default: float) -> float:
    """DMR's keep-alive forms: seconds ("300"), Go-style durations ("5m", "1h30m", "90s"), "0" (unload
    at once) and "-1" (never)."""
    if text is None or text.strip() == "":
        return default
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(-?\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"DMR_KEEP_ALIVE={text!r} is not a duration (e.g. 300, 5m, 1h, -1)")
    return sum(float(n) * units[u] for n, u in parts)


#: Idle time after which a loaded model is unloaded, in seconds (DMR's 5 min; 0 = at once, <0 = never).
DEFAULT_KEEP_ALIVE_S = _keep_alive_seconds(os.environ.get("DMR_KEEP_ALIVE"), BUILTIN_KEEP_ALIVE_S)
#: Parallel sequences (llama-server -np) per loaded model; the context is shared among them.
DEFAULT_N_SLOTS = env_int("DMR_PARALLEL", BUILTIN_N_SLOTS)
#: Prompt tokens a step gathers from waiting requests (oldest first) before it stops taking more: see
#: csrc/engine.cpp build_batch. Small: requests arriving together get their first tokens one after another.
PREFILL_GROUP = env_int("DMR_PREFILL_GROUP", 32)
#: One KV pool shared by all slots (llama-server -kvu) instead of one stream per slot: see EngineConfig.
KV_UNIFIED = env_bool("DMR_KV_UNIFIED", False)
#: A file that gets one line per engine step (llama_decode): for finding where a workload's time goes
#: (`python bench/step_trace.py FILE`). Empty: off.
STEP_TRACE = os.environ.get("DMR_STEP_TRACE", "")
#: Request/response pairs kept per model by the recorder (DMR: 10).
RECORDER_SIZE = env_int("DMR_RECORDER_SIZE", 10)
#: How long a stored Responses API response serves `previous_response_id` and GET /v1/responses/{id}, in
#: seconds (DMR keeps them 1 h).
RESPONSES_TTL_S = env_int("DMR_RESPONSES_TTL", 3600)


def extra_origins() -> list[str]:
    """CORS origins allowed beside localhost/127.0.0.1/0.0.0.0 on any port (DMR_ORIGINS, comma list)."""
    return [o.strip() for o in os.environ.get("DMR_ORIGINS", "").split(",") if o.strip()]


def allowed_hosts() -> list[str]:
    """Host names served beside IP literals, localhost and Docker's host names (DMR_ALLOWED_HOSTS, comma
    list; `*` serves any): the DNS-rebinding check in dmr.server.exposure."""
    return [h.strip() for h in os.environ.get("DMR_ALLOWED_HOSTS", "").split(",") if h.strip()]


def api_key() -> str | None:
    """When set (DMR_API_KEY), every route but GET / needs `Authorization: Bearer <key>`."""
    return os.environ.get("DMR_API_KEY") or None


def state_path() -> Path:
    """Where `_configure` settings persist across restarts (DMR_STATE_PATH; default beside the store)."""
    explicit = os.environ.get("DMR_STATE_PATH")
    if explicit:
        return Path(explicit).expanduser()
    return models_path().parent / "runtime-config.json"


def log_dir() -> Path:
    """Where the service log is written for GET /logs (DMR_LOG_DIR; DMR's MODEL_RUNNER_LOG_DIR)."""
    explicit = os.environ.get("DMR_LOG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return _default_log_dir()


def _default_log_dir() -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / "dmr-logs"


def memory_budget() -> int:
    """Bytes the resident models may use together (DMR_MEMORY_BUDGET, bytes or with K/M/G suffix).

    Default: 75% of physical RAM (CPU build); a GPU build should lower this to device memory."""
    raw = os.environ.get("DMR_MEMORY_BUDGET", "").strip()
    if raw:
        return parse_bytes(raw)
    return _default_memory_budget()


def _default_memory_budget() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * 0.75)


def parse_bytes(text: str) -> int:
    units = {
        "": 1,
        "B": 1,
        "K": 1 << 10,
        "KB": 1 << 10,
        "KIB": 1 << 10,
        "M": 1 << 20,
        "MB": 1 << 20,
        "MIB": 1 << 20,
        "G": 1 << 30,
        "GB": 1 << 30,
        "GIB": 1 << 30,
        "T": 1 << 40,
        "TB": 1 << 40,
    }
    t = text.strip().upper()
    num = t.rstrip("KMGTIB")
    unit = t[len(num) :]
    if unit not in units:
        raise ValueError(f"{text!r} is not a size")
    try:
        return int(float(num) * units[unit])
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a size") from exc


# --- client (the dmr CLI) -------------------------------------------------------------------------------

#: Where the CLI looks for the server when neither DMR_HOST nor MODEL_RUNNER_HOST says (DMR's Engine port).
DEFAULT_CLIENT_URL = f"http://localhost:{BUILTIN_PORT}"
#: Seconds the CLI waits for a `dmr serve` it started itself to answer.
SERVER_START_TIMEOUT_S = env_int("DMR_START_TIMEOUT", 60)


def client_url() -> str:
    """The server the CLI talks to: DMR_HOST, else MODEL_RUNNER_HOST (DMR's variable), else localhost:12434.

    DMR_HOST may also hold a bare address for `dmr serve` (e.g. `0.0.0.0`); the port then defaults."""
    raw = (os.environ.get("DMR_HOST") or os.environ.get("MODEL_RUNNER_HOST") or "").strip()
    if not raw:
        return DEFAULT_CLIENT_URL
    if "://" not in raw:
        raw = "http://" + raw
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (DEFAULT_PORT if parts.scheme == "http" else 443)
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


def serve_address() -> tuple[str, int]:
    """Bind address and port for `dmr serve` from DMR_HOST / DMR_PORT; DMR_HOST may be a URL (the
    same value the CLI uses to find the server), whose host and port are then taken."""
    return _bind_address(os.environ)


def history_path() -> Path:
    """The REPL's input history (DMR_HISTORY; default beside the store)."""
    explicit = os.environ.get("DMR_HISTORY")
    if explicit:
        return Path(explicit).expanduser()
    return models_path().parent / "history"


@dataclass(frozen=True)
class ServeSettings:
    """What `dmr serve` runs with, resolved once: each value from its CLI flag, else its DMR_* variable, else
    the default. Built by `resolve` and passed down (store, scheduler, app); nothing reads the environment
    for these after that, and nothing changes them."""

    host: str
    port: int
    models_path: Path
    state_path: Path
    log_dir: Path
    memory_budget: int
    keep_alive_s: float
    parallel: int
    context_size: int
    threads: int | None
    origins: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    api_key: str | None
    max_body: int

    @classmethod
    def resolve(cls, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> ServeSettings:
        """`flags`: the CLI's values by field name (None = not given). ValueError names a bad value."""
        env = os.environ if environ is None else environ

        def pick(name: str, var: str) -> str | None:
            given = flags.get(name)
            if given is not None:
                return str(given)
            raw = env.get(var, "").strip()
            return raw or None

        def integer(name: str, var: str, default: int | None) -> int | None:
            raw = pick(name, var)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{name.replace('_', '-')} {raw!r} is not an integer") from None
            if value <= 0 and name != "port":
                raise ValueError(f"{name.replace('_', '-')} must be a positive number, got {value}")
            return value

        bind_host, bind_port = _bind_address(env)
        store = Path(pick("models_path", "DMR_MODELS_PATH") or _default_models_path(env)).expanduser()
        state = pick("state_path", "DMR_STATE_PATH")
        logs = pick("log_dir", "DMR_LOG_DIR")
        budget = pick("memory_budget", "DMR_MEMORY_BUDGET")
        origins = pick("origins", "DMR_ORIGINS") or ""
        hosts = pick("allowed_hosts", "DMR_ALLOWED_HOSTS") or ""
        return cls(
            host=str(flags.get("host") or bind_host),
            port=int(flags["port"]) if flags.get("port") is not None else bind_port,
            models_path=store,
            state_path=Path(state).expanduser() if state else store.parent / "runtime-config.json",
            log_dir=Path(logs).expanduser() if logs else _default_log_dir(),
            memory_budget=parse_bytes(budget) if budget else _default_memory_budget(),
            keep_alive_s=_keep_alive_seconds(pick("keep_alive", "DMR_KEEP_ALIVE"), BUILTIN_KEEP_ALIVE_S),
            parallel=integer("parallel", "DMR_PARALLEL", BUILTIN_N_SLOTS) or BUILTIN_N_SLOTS,
            context_size=integer("context_size", "DMR_CONTEXT_SIZE", BUILTIN_CONTEXT_SIZE)
            or BUILTIN_CONTEXT_SIZE,
            threads=integer("threads", "DMR_THREADS", None),
            origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            allowed_hosts=tuple(h.strip() for h in hosts.split(",") if h.strip()),
            api_key=pick("api_key", "DMR_API_KEY"),
            max_body=integer("max_body", "DMR_MAX_BODY", BUILTIN_MAX_BODY) or BUILTIN_MAX_BODY,
        )


def _default_models_path(env: Mapping[str, str]) -> Path:
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "dmr" / "models"


def _bind_address(env: Mapping[str, str]) -> tuple[str, int]:
    """serve_address() over an explicit environment."""
    raw = env.get("DMR_HOST", "").strip()
    port_raw = env.get("DMR_PORT", "").strip()
    try:
        port = int(port_raw) if port_raw else BUILTIN_PORT
    except ValueError:
        raise ValueError(f"DMR_PORT={port_raw!r} is not an integer") from None
    if not raw:
        return "127.0.0.1", port
    if "://" in raw:
        from urllib.parse import urlsplit

        parts = urlsplit(raw)
        host = parts.hostname or "127.0.0.1"
        return ("127.0.0.1" if host == "localhost" else host), (parts.port or port)
    return raw, port
