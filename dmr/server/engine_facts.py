"""What the server says about its engine in `/version` and the start-up log. Its own module so that both the
app (start-up) and the routes (`/version`) import it, instead of the routes reaching back into the app."""

from __future__ import annotations

from typing import Any


def engine_description() -> str:
    import dmr

    return f"in-process llama.cpp (dmr {dmr.__version__})"


def engine_info() -> dict[str, Any]:
    """Extra `/version` fields for `dmr version` (DMR answers only `version`): the llama.cpp source the
    module was built from, the compiled backend and the ggml devices. Loads the engine module, which only a
    server that is about to run models anyway should do."""
    try:
        from dmr.engine.llama import build_info
    except ImportError:
        return {"llama.cpp": "unknown", "backend": "unknown", "devices": []}
    return build_info()
