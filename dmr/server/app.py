"""build_app: the Starlette application (routes, hardening, CORS, lifespan) over one ServerState.

Hardening, all in one ASGI middleware in front of the routes: `//` in paths is collapsed (DMR cleans
paths), requests naming a foreign `Host` and cross-site state changes are refused (dmr.server.exposure),
an optional API key (DMR_API_KEY; `Authorization: Bearer` or `x-api-key`) guards everything but `GET /`
and `GET /health`, and bodies over the limit are refused from their Content-Length before any is read
(routes also count streamed bytes). CORS admits localhost/127.0.0.1/0.0.0.0 on any port plus DMR_ORIGINS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from dmr import config
from dmr.models.store import Store
from dmr.scheduling.backends import engine_description, engine_info
from dmr.scheduling.scheduler import Scheduler
from dmr.server import ui
from dmr.server.errors import HTTPError, dialect_error_body, dialect_of_path
from dmr.server.exposure import LOCAL_ORIGINS, Exposure
from dmr.server.logbuffer import LOG_BUFFER
from dmr.server.recorder import Recorder
from dmr.server.routes import routes
from dmr.server.state import ServerState

_SLASHES = re.compile(r"/{2,}")


def _json_error(status: int, message: str, kind: str, path: str = "") -> Any:
    """The middleware's refusals, built by the one error-JSON builder (dmr.server.errors), in the shape of
    the dialect the path belongs to (an anthropic client refused for its key reads Anthropic's error)."""
    return dialect_error_body(HTTPError(status, message, kind), dialect_of_path(path))[1]


class Hardening:
    #: What an API key does not guard: the liveness probes (Testcontainers reads `GET /`).
    OPEN = frozenset({("GET", "/"), ("HEAD", "/"), ("GET", "/health"), ("HEAD", "/health")})
    #: Routes that take model files (they bound their bodies themselves): a tarball, an Ollama blob.
    UPLOADS = ("/models/load", "/api/blobs/")

    def __init__(self, app: ASGIApp, api_key: str | None, max_body: int, exposure: Exposure) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body = max_body
        self.exposure = exposure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if "//" in path:
            path = _SLASHES.sub("/", path)
            scope = {**scope, "path": path, "raw_path": path.encode()}
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.exposure.refusal(method, headers)
        if refusal is not None:
            await _send_json(send, 403, _json_error(403, refusal, "permission_error", path))
            return
        if (
            self.api_key
            and method != "OPTIONS"
            and (method, path) not in self.OPEN
            and not ui.public(method, path)
        ):
            given = headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else headers.get("x-api-key", "")
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                await _send_json(
                    send, 401, _json_error(401, "invalid or missing API key", "authentication_error", path)
                )
                return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body and not path.startswith(self.UPLOADS):
            await _send_json(
                send,
                413,
                _json_error(
                    413, f"request body is larger than {self.max_body} bytes", "invalid_request_error", path
                ),
            )
            return
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    kind = "not_found_error" if status == 404 else "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(
        _json_error(status, str(detail), kind, request.url.path),
        status_code=status,
        headers=getattr(exc, "headers", None),
    )


def build_app(
    store: Store | None = None,
    scheduler: Scheduler | None = None,
    *,
    api_key: str | None = None,
    origins: list[str] | None = None,
    allowed_hosts: list[str] | None = None,
    max_body: int | None = None,
    log_dir: Path | None = None,
) -> Starlette:
    st = store or Store()
    sched = scheduler or Scheduler(st)
    limit = config.MAX_BODY_BYTES if max_body is None else max_body
    state = ServerState(st, sched, Recorder(), max_body=limit)
    key = api_key if api_key is not None else config.api_key()
    allowed_origins = origins if origins is not None else config.extra_origins()
    exposure = Exposure.build(
        allowed_hosts if allowed_hosts is not None else config.allowed_hosts(), allowed_origins
    )

    root_logger = logging.getLogger("dmr")
    if LOG_BUFFER not in root_logger.handlers:
        root_logger.addHandler(LOG_BUFFER)
        LOG_BUFFER.open_file(log_dir or config.log_dir())
    if root_logger.level == logging.NOTSET or root_logger.level > logging.INFO:
        root_logger.setLevel(logging.INFO)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logging.getLogger("dmr.server").info("dmr server started (%s)", engine_description())
        # What crashes and failed operations left in the store (orphan blobs, stale partial downloads)
        try:
            removed = await asyncio.to_thread(st.gc)
        except OSError as exc:
            logging.getLogger("dmr.server").warning("store clean-up failed: %s", exc)
        else:
            if removed:
                logging.getLogger("dmr.server").info("removed %d unreferenced store files", len(removed))
        notice = engine_info().get("notice")
        if notice:
            logging.getLogger("dmr.server").warning("%s", notice)
        try:
            yield
        finally:
            await sched.close()

    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=allowed_origins,
                allow_origin_regex=LOCAL_ORIGINS,
                allow_methods=["*"],
                allow_headers=["*"],
            ),
            Middleware(Hardening, api_key=key, max_body=limit, exposure=exposure),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
        lifespan=lifespan,
    )
    app.state.dmr = state
    return app
