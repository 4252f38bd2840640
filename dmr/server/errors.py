"""Exception -> OpenAI error JSON, as an HTTP response or as an SSE error event: one function decides.

Shape (OpenAI's): `{"error": {"message", "type", "param", "code"}}`. A prompt that does not fit gets
llama-server's `exceed_context_size_error` type plus `n_prompt_tokens` and `n_ctx`, so clients that
handle llama-server's error keep working. Unexpected exceptions become a 500 with a short message
(the traceback goes to the log, not to the client).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import JSONResponse

from dmr import errors

log = logging.getLogger("dmr.server")


class HTTPError(errors.DmrError):
    """An HTTP-level refusal raised by the server itself (413, 405, 415 ...)."""

    def __init__(
        self, status: int, message: str, error_type: str = "invalid_request_error", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.error_type = error_type
        self.param = param


def error_payload(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The one place an exception becomes (status, OpenAI error body)."""
    if isinstance(exc, errors.DmrError):
        status = exc.http_status
        err: dict[str, Any] = {
            "message": str(exc) or type(exc).__name__,
            "type": exc.error_type,
            "param": getattr(exc, "param", None),
            "code": None,
        }
        if isinstance(exc, errors.ContextFullError):
            err["type"] = "exceed_context_size_error"
            err["code"] = "context_length_exceeded"
            err["n_prompt_tokens"] = exc.n_tokens
            err["n_ctx"] = exc.n_ctx
        elif isinstance(exc, errors.ModelNotFoundError):
            err["code"] = "model_not_found"
    else:
        log.error("unexpected error", exc_info=exc)
        status = 500
        err = {
            "message": f"internal error: {type(exc).__name__}: {exc}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    return status, {"error": err}


#: Anthropic's error `type` per HTTP status (its API reference, "Errors"); other statuses by their class.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def dialect_error_body(exc: BaseException, dialect: str) -> tuple[int, Any]:
    """(status, body) in the shape the dialect's clients parse: OpenAI's `{"error": {...}}` (also the
    Responses API's), Anthropic's `{"type": "error", "error": {"type", "message"}}`, Ollama's
    `{"error": "message"}`."""
    status, body = error_payload(exc)
    message = body["error"]["message"]
    if dialect == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        return status, {"type": "error", "error": {"type": kind, "message": message}}
    if dialect == "ollama":
        return status, {"error": message}
    return status, body


def dialect_of_path(path: str) -> str:
    """The dialect a path belongs to, for refusals made before any route runs (API key, size, Host)."""
    if path.startswith("/api/"):
        return "ollama"
    if path.endswith(("/messages", "/messages/count_tokens")):
        return "anthropic"
    return "openai"


def error_response(exc: BaseException, dialect: str = "openai") -> JSONResponse:
    status, body = dialect_error_body(exc, dialect)
    return JSONResponse(body, status_code=status)


def sse_error_event(exc: BaseException) -> str:
    """The error as the SSE event llama-server sends after the 200 is out: `error: {...}` data."""
    _, body = error_payload(exc)
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
