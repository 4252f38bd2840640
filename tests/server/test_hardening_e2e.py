"""A real `dmr serve` with the real model: requests that used to kill or wedge the process (issue #17) are
refused in the dialect asked, and the server answers the next request as if nothing happened."""

from __future__ import annotations

import subprocess
import time

import pytest

from .conftest import MODEL
from .helpers import Server

CHAT = "/engines/v1/chat/completions"
COMPLETION = "/engines/v1/completions"
HELLO = [{"role": "user", "content": "Hi"}]

#: grammars no output can match: llama.cpp aborted (chat) or threw out of the decode thread (completions)
DEAD_ENDS = ["root ::= [^\\x00-\\U0010FFFF]", 'root ::= "\\x00"']


def _body(path: str, **extra: object) -> dict[str, object]:
    shape: dict[str, object] = {"messages": HELLO} if path == CHAT else {"prompt": "Hi"}
    return {"model": MODEL, "max_tokens": 4, **shape, **extra}


def _still_serving(server: Server) -> None:
    assert server.alive(), server.log()[-3000:]
    with server.client() as c:
        r = c.post(CHAT, json=_body(CHAT, temperature=0))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("path", [CHAT, COMPLETION])
@pytest.mark.parametrize("grammar", DEAD_ENDS)
def test_a_grammar_no_token_can_satisfy_is_a_400_and_the_server_lives(
    server: Server, path: str, grammar: str
) -> None:
    with server.client() as c:
        r = c.post(path, json=_body(path, grammar=grammar))
        assert r.status_code == 400, r.text
        assert "the grammar allows no token" in r.json()["error"]["message"]
        # streamed, the refusal comes as the stream's error event
        with c.stream("POST", path, json=_body(path, grammar=grammar, stream=True)) as s:
            text = s.read().decode()
        assert '"error"' in text and "the grammar allows no token" in text, text
    _still_serving(server)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"grammar": 'root ::= "x"{5,2}'}, "the maximum is below the minimum"),
        ({"grammar": 'root ::= "a"\x00 | "b"'}, "NUL byte"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "s",
                        "schema": {"type": "string", "minLength": 5, "maxLength": 2},
                    },
                }
            },
            "minLength (5) is greater than maxLength (2)",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"type": "array", "minItems": 3, "maxItems": 1}},
                }
            },
            "minItems (3) is greater than maxItems (1)",
        ),
    ],
)
def test_unbounded_repetitions_and_nul_bytes_are_refused_at_once(
    server: Server, extra: dict[str, object], words: str
) -> None:
    """`{m,n}` with n < m made llama.cpp's parser grow memory at ~0.5 GB/s with the event loop blocked."""
    with server.client(timeout=30) as c:
        start = time.monotonic()
        r = c.post(CHAT, json=_body(CHAT, **extra))
        assert time.monotonic() - start < 5
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]
    _still_serving(server)


def test_fifty_optional_properties_give_a_grammar_the_model_follows(server: Server) -> None:
    """A valid schema that used to be refused ("the grammar does not parse")."""
    schema = {"type": "object", "properties": {f"k{i}": {"type": "integer"} for i in range(50)}}
    rf = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    with server.client() as c:
        r = c.post(CHAT, json=_body(CHAT, response_format=rf, max_tokens=24, temperature=0))
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["message"]["content"]
    assert content.lstrip().startswith("{"), content


def _curl(server: Server, *args: str) -> tuple[int, str]:
    out = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


def test_a_browser_shaped_cross_site_post_and_a_rebound_host_change_and_read_nothing(server: Server) -> None:
    tag = f"{server.url}/models/{MODEL}/tag?repo=evil.example/stolen&tag=latest"
    code, body = _curl(
        server,
        "-X",
        "POST",
        tag,
        "-H",
        "Origin: https://evil.example",
        "-H",
        "Content-Type: text/plain;charset=UTF-8",
        "-H",
        "Sec-Fetch-Site: cross-site",
        "-H",
        "Sec-Fetch-Mode: no-cors",
        "--data-raw",
        "x",
    )
    assert code == 403 and "permission_error" in body, body
    code, body = _curl(server, f"{server.url}/engines/requests", "-H", "Host: evil.example:12434")
    assert code == 403 and "DNS rebinding" in body, body
    code, body = _curl(server, f"{server.url}/models")
    assert code == 200 and "evil.example/stolen" not in body
    # curl as a local client changes what it asks for
    code, _ = _curl(server, "-X", "POST", f"{server.url}/models/{MODEL}/tag?repo=ai/curl-made&tag=v1")
    assert code in (200, 201)
    code, body = _curl(server, f"{server.url}/models")
    assert "ai/curl-made:v1" in body
    code, _ = _curl(server, "-X", "DELETE", f"{server.url}/models/ai/curl-made:v1")
    assert code == 200
