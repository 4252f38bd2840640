"""The ollama dialect's routes (registered by dmr.server.routes)."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
