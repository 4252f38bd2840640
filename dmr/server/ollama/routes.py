"""The ollama dialect's routes (registered by dmr.server.routes): Ollama's `/api/*` on dmr's own port
(and on `dmr serve --ollama-port`), errors as Ollama's `{"error": "..."}`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dmr.server.endpoints import Endpoint, inference, mapped
from dmr.server.ollama import chat, models
from dmr.server.state import ServerState, get_state

DIALECT = "ollama"


def _managed(fn: Callable[[ServerState, Request], Awaitable[Response]]) -> Endpoint:
    """A management route: (state, request) -> Response, errors in Ollama's shape."""

    async def endpoint(request: Request) -> Response:
        return await fn(get_state(request), request)

    return mapped(endpoint, DIALECT)


async def _version(request: Request) -> Response:
    return models.version()


async def _tags(state: ServerState, request: Request) -> Response:
    return await models.tags(state)


async def _ps(state: ServerState, request: Request) -> Response:
    return await models.ps(state)


def routes() -> list[BaseRoute]:
    return [
        Route("/api/version", mapped(_version, DIALECT), methods=["GET", "HEAD"]),
        Route("/api/tags", _managed(_tags), methods=["GET", "HEAD"]),
        Route("/api/ps", _managed(_ps), methods=["GET"]),
        Route("/api/show", _managed(models.show_model), methods=["POST"]),
        Route("/api/chat", inference(chat.create_chat, DIALECT), methods=["POST"]),
        Route("/api/generate", inference(chat.create_generate, DIALECT), methods=["POST"]),
        Route("/api/embed", inference(chat.create_embed, DIALECT), methods=["POST"]),
        Route("/api/embeddings", inference(chat.create_embeddings, DIALECT), methods=["POST"]),
        Route("/api/pull", _managed(models.pull), methods=["POST"]),
        Route("/api/push", _managed(models.push), methods=["POST"]),
        Route("/api/delete", _managed(models.delete), methods=["DELETE"]),
        Route("/api/copy", _managed(models.copy), methods=["POST"]),
        Route("/api/create", _managed(models.create), methods=["POST"]),
        Route("/api/blobs/{digest}", _managed(models.blob), methods=["HEAD", "POST"]),
    ]
