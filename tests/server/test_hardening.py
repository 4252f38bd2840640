"""Fast tier: bad input that used to reach code that could not take it (issue #17's findings) is a 400 in
the dialect asked, over the in-process app and the fake engine. The crash cases that need llama.cpp itself
are in test_hardening_e2e.py, against a real server process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dmr.engine import chat

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

HELLO = [{"role": "user", "content": "Hi"}]
CHAT = "/engines/v1/chat/completions"
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


async def _bystander_answers_while(fake: FakeServer, hostile: Any) -> None:
    """`hostile` (a request coroutine) runs while another client's request must still be answered."""
    task = asyncio.ensure_future(hostile)
    await asyncio.sleep(0.05)
    start = time.monotonic()
    r = await fake.client.get("/engines/v1/models")
    assert r.status_code == 200
    assert time.monotonic() - start < 0.5, "the event loop was blocked"
    assert not task.done(), "the hostile request should still be running"
    await task


@pytest.mark.parametrize(
    ("template", "words"),
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "did not finish",
        ),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
            "did not finish",
        ),
    ],
)
async def test_a_template_that_never_finishes_is_stopped_and_others_are_served_meanwhile(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch, template: str, words: str
) -> None:
    monkeypatch.setattr(chat, "RENDER_DEADLINE_S", 1.0)
    fake.script.chat_template = template
    result: dict[str, Any] = {}

    async def hostile() -> None:
        r = await fake.client.post(CHAT, json={"model": MODEL, "messages": HELLO})
        result["r"] = r

    start = time.monotonic()
    await _bystander_answers_while(fake, hostile())
    assert time.monotonic() - start < 5
    r = result["r"]
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ('{{ "x" * 1000000000 }}', "a repetition makes a value too large"),
        ("{% for i in range(100000) %}{{ '0123456789' * 100 }}{% endfor %}", "renders more than"),
        ("{{ 2 ** 100000000 }}", "exponent 100000000 is too large"),
    ],
)
async def test_a_template_that_would_take_the_hosts_memory_is_refused(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch, template: str, words: str
) -> None:
    monkeypatch.setattr(chat, "MAX_RENDER_CHARS", 1 << 20)
    fake.script.chat_template = template
    r = await fake.client.post(CHAT, json={"model": MODEL, "messages": HELLO})
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text
