"""Fast tier: bad input that used to reach code that could not take it (issue #17's findings) is a 400 in
the dialect asked, over the in-process app and the fake engine. The crash cases that need llama.cpp itself
are in test_hardening_e2e.py, against a real server process."""

from __future__ import annotations

import pytest

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

HELLO = [{"role": "user", "content": "Hi"}]
DEEP = 100_000
#: JSON nested 100k deep: a RecursionError inside the JSON decoders was a 500 on every route
NESTED = b"[" * DEEP + b"]" * DEEP
JSON_ROUTES = [
    "/engines/v1/chat/completions",
    "/engines/v1/completions",
    "/engines/v1/embeddings",
    "/engines/v1/rerank",
    "/v1/chat/completions",
    "/engines/_configure",
    "/engines/unload",
    "/models/create",
]


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_json_nested_beyond_any_decoder_is_a_400(fake: FakeServer, path: str) -> None:
    for body in (NESTED, b'{"model": "' + MODEL.encode() + b'", "messages": ' + NESTED + b"}"):
        r = await fake.client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert r.json()["error"]["type"] == "invalid_request_error", r.text[:300]


async def test_preload_only_with_a_deep_body_is_a_400(fake: FakeServer) -> None:
    r = await fake.client.post(
        "/engines/v1/chat/completions", content=NESTED, headers={"x-preload-only": "true"}
    )
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"], r.text[:300]


@pytest.mark.parametrize(
    ("tools", "tool_choice", "words"),
    [
        (None, "bogus", "tool_choice must be 'none', 'auto', 'required'"),
        ([{"type": "function", "function": {"name": "f"}}], "bogus", "tool_choice must be"),
        ([{"type": "function", "function": {"name": "f"}}], 7, "at `$.tool_choice`"),
        (None, "required", "the request has no tools"),
        (None, {"type": "function", "function": {"name": "f"}}, "the request has no tools"),
    ],
)
async def test_tool_choice_that_cannot_be_honoured_is_a_400(
    fake: FakeServer, tools: object, tool_choice: object, words: str
) -> None:
    body: dict[str, object] = {"model": MODEL, "messages": HELLO, "tool_choice": tool_choice}
    if tools is not None:
        body["tools"] = tools
    r = await fake.client.post("/engines/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]


async def test_tool_choice_none_or_auto_without_tools_still_answers(fake: FakeServer) -> None:
    for choice in ("none", "auto"):
        r = await fake.client.post(
            "/engines/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "tool_choice": choice}
        )
        assert r.status_code == 200, r.text
