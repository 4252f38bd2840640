"""The web UI (issue #15): static files served at /ui/, and the redirect of a browser navigating to /.

The files in dmr/server/static/ are plain HTML, CSS and JavaScript modules (no build step, nothing from
outside the machine); they talk to the same HTTP API as every other client. Every answer under /ui/ carries
a Content-Security-Policy that admits this origin only: no inline script, no foreign fetch, no framing.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

STATIC = Path(__file__).resolve().with_name("static")
PREFIX = "/ui/"

#: Same origin only. Styles set through the CSSOM (element.style) are not inline styles for CSP.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}


def wants_ui(request: Request) -> bool:
    """Whether GET / comes from a browser navigating to the page (not from a client reading DMR's text).

    Browsers say so with `Sec-Fetch-Dest: document` (every current one) and name `application/xhtml+xml` in
    the `Accept` of a navigation; Java's default `Accept` starts with `text/html` too but names neither, and
    Testcontainers, curl and the SDKs send no `Sec-Fetch-*` header: they keep reading DMR's plain text."""
    if request.method != "GET":
        return False
    if request.headers.get("sec-fetch-dest", "").strip().lower() == "document":
        return True
    return "application/xhtml+xml" in request.headers.get("accept", "").lower()


def public(method: str, path: str) -> bool:
    """Whether the API key may leave this request unguarded: the UI's static files (they hold no data; the
    page asks for the key and sends it on each API call). For dmr.server.app's Hardening middleware."""
    return method in ("GET", "HEAD") and (path == PREFIX.rstrip("/") or path.startswith(PREFIX))


def _resolve(rel: str) -> Path | None:
    """The static file a path under /ui/ names, or None (also for anything outside the folder)."""
    target = (STATIC / (rel.strip("/") or "index.html")).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file() or target.suffix not in MEDIA_TYPES:
        return None
    return target


async def _file(request: Request) -> Response:
    target = _resolve(request.path_params.get("path", ""))
    if target is None:
        return PlainTextResponse("not found\n", status_code=404, headers=HEADERS)
    return FileResponse(target, media_type=MEDIA_TYPES[target.suffix], headers=HEADERS)


async def _to_index(request: Request) -> Response:
    return RedirectResponse(PREFIX, status_code=302, headers=HEADERS)


def routes() -> list[BaseRoute]:
    return [
        Route(PREFIX.rstrip("/"), _to_index, methods=["GET", "HEAD"]),
        Route(PREFIX + "{path:path}", _file, methods=["GET", "HEAD"]),
    ]
