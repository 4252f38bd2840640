"""Anthropic Messages routes (registered by dmr.server.routes): where DMR serves them, plus
`/engines/{backend}/v1/...`. Claude Code and the anthropic SDK post to `<base URL>/v1/messages`."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from dmr.server.anthropic.serving import DIALECT, count_tokens, create_message
from dmr.server.endpoints import inference

PREFIXES = ("/v1", "/anthropic/v1", "/engines/v1", "/engines/{backend}/v1")


def routes() -> list[BaseRoute]:
    messages = inference(create_message, DIALECT)
    count = inference(count_tokens, DIALECT)
    out: list[BaseRoute] = []
    for prefix in PREFIXES:
        out.append(Route(f"{prefix}/messages", messages, methods=["POST"]))
        out.append(Route(f"{prefix}/messages/count_tokens", count, methods=["POST"]))
    return out
