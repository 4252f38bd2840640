"""A real `dmr serve` with the real model: requests that used to kill or wedge the process (issue #17) are
refused in the dialect asked, and the server answers the next request as if nothing happened."""

from __future__ import annotations

import struct
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .conftest import MODEL
from .helpers import Server, make_store, running_server

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
        # each live alternative is walked for every candidate token on the step all requests share
        (
            {"grammar": "root ::= " + " | ".join(f'"w{i}"' for i in range(1600))},
            "more than 1536 alternatives",
        ),
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


def test_a_model_file_declaring_zero_layers_is_a_400_and_the_server_lives(
    tmp_path: Path, smollm2_path: Path
) -> None:
    """llama.cpp asserted on `block_count = 0` and took the process with it."""
    data = smollm2_path.read_bytes()
    key = b"llama.block_count"
    at = data.index(struct.pack("<Q", len(key)) + key) + 8 + len(key) + 4  # past the key and its u32 type
    bad = tmp_path / "zero-layers.gguf"
    bad.write_bytes(data[:at] + struct.pack("<I", 0) + data[at + 4 :])
    store = tmp_path / "store"
    make_store(store, {MODEL: smollm2_path, "ai/zero-layers:latest": bad})
    with running_server(tmp_path / "srv", store, env={"DMR_CONTEXT_SIZE": "1024"}) as srv:
        with srv.client() as c:
            r = c.post(CHAT, json={**_body(CHAT), "model": "ai/zero-layers"})
        assert r.status_code == 400, r.text
        assert "block_count is 0" in r.json()["error"]["message"]
        _still_serving(srv)


def test_a_server_start_collects_what_failed_operations_left_and_df_counts_it(
    tmp_path: Path, smollm2_path: Path
) -> None:
    store_root = tmp_path / "store"
    store = make_store(store_root, {MODEL: smollm2_path})
    orphan = store.put_blob_bytes(b"left by a load that failed" * 1000)
    with running_server(tmp_path / "srv", store_root) as srv:
        assert not store.has_blob(orphan), srv.log()[-2000:]
        with srv.client() as c:
            assert "removed 1 unreferenced store files" in c.get("/logs").text
            assert c.get("/engines/df").json()["unreferenced_disk_usage"] == 0
            leftover = store.put_blob_bytes(b"another")  # while it runs: counted, collected next start
            assert c.get("/engines/df").json()["unreferenced_disk_usage"] == len(b"another")
            assert c.get("/models").json()[0]["tags"] == [MODEL]
    assert store.has_blob(leftover)


def test_a_prompt_that_cannot_fit_is_refused_before_it_is_tokenized(server: Server) -> None:
    """100k short messages (2.3 MB): llama.cpp took 163 s to tokenize what was never going to fit."""
    messages = [{"role": "user", "content": f"message {i}"} for i in range(100_000)]
    with server.client(timeout=60) as c:
        start = time.monotonic()
        r = c.post(CHAT, json={"model": MODEL, "messages": messages, "max_tokens": 1})
        took = time.monotonic() - start
    assert r.status_code == 400, r.text
    assert "more than the context" in r.json()["error"]["message"]
    assert took < 20, took
    _still_serving(server)


def test_an_abandoned_embeddings_batch_stops_with_its_client(server: Server) -> None:
    """The batch went on for minutes after its client left, and every later embedding waited behind it."""
    big = {"model": MODEL, "input": [f"document number {i} " * 60 for i in range(2048)]}
    with server.client(timeout=3) as c, pytest.raises(httpx.TimeoutException):
        c.post("/engines/v1/embeddings", json=big)  # gives up after 3 s: the connection closes
    with server.client(timeout=120) as c:
        start = time.monotonic()
        r = c.post("/engines/v1/embeddings", json={"model": MODEL, "input": "after"})
        took = time.monotonic() - start
    assert r.status_code == 200, r.text
    assert took < 15, f"the next embedding waited {took:.1f} s behind the abandoned batch"
