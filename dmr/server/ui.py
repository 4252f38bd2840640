"""The web UI (issue #15): static files served at /ui/, and the redirect of a browser navigating to /."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute


def wants_ui(request: Request) -> bool:
    """Whether GET / comes from a browser navigating to the page (not from a client reading DMR's text)."""
    return False


def routes() -> list[BaseRoute]:
    return []
