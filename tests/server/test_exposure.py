"""Fast tier: web pages cannot drive or read the runner through the user's browser (issue #17, finding 3),
and clients that are not browsers are unaffected. Requests carry the exact headers a browser sends."""

from __future__ import annotations

import socket
from pathlib import Path

import openai
import pytest

from dmr.server.exposure import Exposure

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

#: What Chromium sends for a page on https://evil.example that does
#: fetch("http://localhost:12434/...", {method: "POST", mode: "no-cors", body: "..."}) (no preflight).
CROSS_SITE = {
    "Origin": "https://evil.example",
    "Content-Type": "text/plain;charset=UTF-8",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "empty",
    "Referer": "https://evil.example/",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131 Safari/537.36",
}
#: The same browser after evil.example's DNS answer changed to 127.0.0.1: same-origin to it, so no Origin
#: on a GET, and the page's own name in Host.
REBOUND = {
    "Host": "evil.example:12434",
    "Sec-Fetch-Site": "same-origin",
    "Sec-Fetch-Mode": "cors",
    "User-Agent": CROSS_SITE["User-Agent"],
}


async def _tags(fake: FakeServer) -> set[str]:
    models = (await fake.client.get("/models")).json()
    return {t for m in models for t in m["tags"]}


async def test_cross_site_simple_posts_change_nothing(fake: FakeServer) -> None:
    before_tags = await _tags(fake)
    before_config = (await fake.client.get("/engines/_configure")).json()
    attempts = [
        ("POST", f"/models/{MODEL}/tag?repo=evil.example/stolen&tag=latest", b""),
        ("POST", "/models/create", b'{"from": "evil.example/model:latest"}'),
        ("POST", "/engines/_configure", b'{"model": "' + MODEL.encode() + b'", "context-size": 64}'),
        ("POST", "/engines/unload", b'{"models": ["' + MODEL.encode() + b'"]}'),
        ("POST", f"/models/{MODEL}/push", b""),
        ("DELETE", f"/models/{MODEL}", b""),
        ("POST", "/engines/v1/chat/completions", b'{"model": "' + MODEL.encode() + b'", "messages": []}'),
    ]
    for method, path, body in attempts:
        r = await fake.client.request(method, path, content=body, headers=CROSS_SITE)
        assert r.status_code == 403, (path, r.status_code, r.text)
        err = r.json()["error"]
        assert err["type"] == "permission_error" and "https://evil.example" in err["message"]
    assert await _tags(fake) == before_tags
    assert (await fake.client.get("/engines/_configure")).json() == before_config
    assert not fake.engines  # nothing was loaded or generated


async def test_a_rebound_host_reads_nothing_and_deletes_nothing(fake: FakeServer) -> None:
    await fake.client.post(
        "/engines/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "secret"}]},
    )
    for method, path in [
        ("GET", "/models"),
        ("GET", "/engines/requests"),
        ("GET", "/engines/v1/models"),
        ("GET", "/logs"),
        ("DELETE", f"/models/{MODEL}"),
    ]:
        r = await fake.client.request(method, path, headers=REBOUND)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "secret" not in r.text and "DNS rebinding" in r.json()["error"]["message"]
    assert MODEL in await _tags(fake)


async def test_local_clients_and_same_origin_pages_are_served(fake: FakeServer, tmp_path: Path) -> None:
    # the openai SDK (no Origin) through the same app
    client = openai.AsyncOpenAI(
        base_url="http://localhost:12434/engines/v1", api_key="x", http_client=fake.client, max_retries=0
    )  # not closed: it would close the shared test client
    answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content
    # curl's headers, against the IP, a Docker name and this machine's name
    for host in (
        "127.0.0.1:12434",
        "[::1]:12434",
        "model-runner.docker.internal",
        socket.gethostname(),
        "x.localhost",
    ):
        r = await fake.client.get(
            "/models", headers={"Host": host, "User-Agent": "curl/7.88.1", "Accept": "*/*"}
        )
        assert r.status_code == 200, (host, r.text)
    # a page served by dmr itself (the web UI), and a local dev server on another port
    for origin in ("http://localhost:12434", "http://127.0.0.1:5173"):
        r = await fake.client.post(
            f"/models/{MODEL}/tag?repo=ai/mine&tag=v1",
            headers={
                "Origin": origin,
                "Sec-Fetch-Site": "same-origin",
                "Content-Type": "text/plain;charset=UTF-8",
            },
        )
        assert r.status_code in (200, 201), (origin, r.text)
    # a preflighted JSON POST from a loopback page gets CORS headers
    r = await fake.client.options(
        "/engines/v1/chat/completions",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_configured_origins_and_hosts_are_served(tmp_path: Path) -> None:
    srv = FakeServer(tmp_path, origins=["https://app.example"], allowed_hosts=["runner.lan"])
    try:
        r = await srv.client.post(
            f"/models/{MODEL}/tag?repo=ai/ok&tag=v1", headers={**CROSS_SITE, "Origin": "https://app.example"}
        )
        assert r.status_code in (200, 201), r.text
        assert (await srv.client.get("/models", headers={"Host": "runner.lan:12434"})).status_code == 200
        assert (await srv.client.get("/models", headers={"Host": "other.lan"})).status_code == 403
        # same-origin under an allowed name (the UI opened as http://runner.lan:12434/ui/)
        r = await srv.client.post(
            "/engines/unload",
            json={"models": []},
            headers={"Host": "runner.lan:12434", "Origin": "http://runner.lan:12434"},
        )
        assert r.status_code == 200, r.text
    finally:
        await srv.close()


async def test_api_key_guards_everything_but_the_liveness_probes(tmp_path: Path) -> None:
    srv = FakeServer(tmp_path, api_key="sekrit")
    try:
        assert (await srv.client.get("/")).status_code == 200
        assert (await srv.client.get("/health")).status_code == 200
        for path in (
            "/engines/requests",
            "/logs",
            "/metrics",
            "/version",
            "/engines/v1/models",
            "/engines/ps",
        ):
            assert (await srv.client.get(path)).status_code == 401, path
    finally:
        await srv.close()


def test_exposure_rules() -> None:
    ex = Exposure.build(["Box.Lan."], ["https://ok.example/"])
    assert ex.host_allowed("box.lan:80") and ex.host_allowed("10.1.2.3:12434") and ex.host_allowed(None)
    assert not ex.host_allowed("attacker.example") and not ex.host_allowed("localhost.attacker.example")
    assert ex.origin_allowed("https://ok.example", "localhost:12434")
    assert not ex.origin_allowed("null", "localhost:12434")
    assert not ex.origin_allowed("http://localhost.evil.example", "localhost:12434")
    assert (
        ex.refusal("GET", {"host": "localhost", "origin": "https://evil.example"}) is None
    )  # reads: CORS decides
    anything = Exposure.build(["*"], ["*"])
    assert anything.host_allowed("whatever.example") and anything.origin_allowed("https://x.example", None)
