"""What every route shares: errors mapped to the dialect's shape, and the inference routes' common front
(the body read with its bound, `X-Preload-Only` answered). Used by routes.py and each dialect's routes."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from dmr.errors import InvalidRequestError
from dmr.server.errors import HTTPError, error_response
from dmr.server.protocol import parse_json
from dmr.server.state import ServerState, get_state, read_body

Endpoint = Callable[[Request], Awaitable[Response]]


def mapped(fn: Endpoint, dialect: str = "openai") -> Endpoint:
    """Every exception leaves as the dialect's error JSON (OpenAI's unless named); nothing escapes as a
    bare 500."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        backend = request.path_params.get("backend")
        if backend is not None and backend not in get_state(request).scheduler.backends.names():
            return error_response(HTTPError(404, f"backend not found: {backend}", "not_found_error"), dialect)
        try:
            return await fn(request)
        except Exception as exc:
            return error_response(exc, dialect)

    return wrapper


InferenceHandler = Callable[[ServerState, Request, bytes], Awaitable[Response]]


def inference(handler: InferenceHandler, dialect: str = "openai") -> Endpoint:
    """An inference route: the body read (bounded), `X-Preload-Only` answered, errors in `dialect`'s shape."""

    async def endpoint(request: Request) -> Response:
        state = get_state(request)
        body = await read_body(request, state.max_body)
        if request.headers.get("x-preload-only", "").lower() == "true":
            doc = parse_json(body)
            model = doc.get("model") if isinstance(doc, dict) else None
            if not isinstance(model, str) or not model:
                raise InvalidRequestError("model is required")
            await state.scheduler.preload(model)
            return Response(status_code=200)
        return await handler(state, request, body)

    return mapped(endpoint, dialect)
