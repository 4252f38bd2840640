"""The Responses API's routes (registered by dmr.server.routes), on every prefix DMR serves them:
`/v1`, the bare root, `/engines`, `/engines/v1` and `/engines/{backend}/v1`. Errors leave in OpenAI's
shape (the Responses API's own)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from dmr.server.endpoints import inference, mapped
from dmr.server.responses.serving import (
    DIALECT,
    count_input_tokens,
    create_response,
    delete_response,
    get_response,
    list_input_items,
)

PREFIXES = ("/v1", "", "/engines", "/engines/v1", "/engines/{backend}/v1")


def routes() -> list[BaseRoute]:
    create = inference(create_response, DIALECT)
    count = inference(count_input_tokens, DIALECT)
    get, delete, items = mapped(get_response), mapped(delete_response), mapped(list_input_items)
    out: list[BaseRoute] = []
    for prefix in PREFIXES:
        base = f"{prefix}/responses"
        out += [
            Route(base, create, methods=["POST"]),
            Route(f"{base}/input_tokens", count, methods=["POST"]),
            Route(f"{base}/{{response_id}}", get, methods=["GET"]),
            Route(f"{base}/{{response_id}}", delete, methods=["DELETE"]),
            Route(f"{base}/{{response_id}}/input_items", items, methods=["GET"]),
        ]
    return out
