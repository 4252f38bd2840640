"""Fast tier: the web UI's serving rules (issue #15) over the in-process app (fake_server.py).

`GET /` redirects a browser navigating to it and nothing else (Testcontainers and Java clients keep
DMR's text), /ui/ serves the static files with a same-origin Content-Security-Policy and never a file
outside dmr/server/static/, and the files stay small and self-contained (no URL of another origin)."""

from __future__ import annotations

import re

import pytest

from dmr.server import ui

from .fake_server import FakeServer

pytestmark = pytest.mark.fast

JAVA_ACCEPT = "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"
CHROME_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
)
BUDGET = 200 * 1024


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate", "Accept": CHROME_ACCEPT},
        {"Sec-Fetch-Dest": "document"},  # what every current browser sends on a navigation
        {"Accept": "text/html,application/xhtml+xml"},  # an older browser: no Sec-Fetch-* headers
    ],
)
async def test_a_browser_navigating_to_root_is_sent_to_the_ui(
    fake: FakeServer, headers: dict[str, str]
) -> None:
    r = await fake.client.get("/", headers=headers)
    assert r.status_code == 302
    assert r.headers["location"] == "/ui/"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, the SDKs, Testcontainers' wait strategy
        {"Accept": JAVA_ACCEPT},  # java.net.HttpURLConnection's default: text/html first, no xhtml
        {"Accept": "text/html"},
        {"Accept": "*/*", "User-Agent": "Mozilla/5.0"},
        {"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors", "Accept": "*/*"},  # a page's own fetch()
        {"Sec-Fetch-Dest": "iframe", "Accept": "text/html"},
    ],
)
async def test_every_other_client_keeps_the_plain_text(fake: FakeServer, headers: dict[str, str]) -> None:
    r = await fake.client.get("/", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "The service is running" in r.text


async def test_head_of_root_is_never_redirected(fake: FakeServer) -> None:
    r = await fake.client.head("/", headers={"Sec-Fetch-Dest": "document"})
    assert r.status_code == 200


async def test_the_ui_is_served_with_a_same_origin_csp(fake: FakeServer) -> None:
    r = await fake.client.get("/ui/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/app.js">' in r.text
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src", "img-src"):
        assert directives[name] == "'self'", name  # no 'unsafe-inline', no other origin
    assert directives["frame-ancestors"] == "'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    js = await fake.client.get("/ui/js/app.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")  # module scripts need a JS type
    assert js.headers["content-security-policy"] == csp
    css = await fake.client.get("/ui/app.css")
    assert css.headers["content-type"].startswith("text/css")


async def test_ui_without_slash_redirects_and_unknown_or_outside_paths_are_404(fake: FakeServer) -> None:
    r = await fake.client.get("/ui")
    assert (r.status_code, r.headers["location"]) == (302, "/ui/")
    for path in ("/ui/nope.js", "/ui/js/", "/ui/%2e%2e/ui.py", "/ui/..%2fui.py", "/ui/js/../../ui.py"):
        r = await fake.client.get(path)
        assert r.status_code == 404, path
    assert ui._resolve("../ui.py") is None
    assert ui._resolve("../../server/ui.py") is None
    assert ui._resolve("/etc/passwd") is None
    assert ui._resolve("") == ui.STATIC / "index.html"


async def test_the_ui_loads_over_its_own_origin_through_the_hardening(fake: FakeServer) -> None:
    """The page's own requests pass the Host/Origin checks: a same-origin POST names its origin."""
    origin = "http://localhost:12434"
    r = await fake.client.post(
        "/engines/unload", json={"all": True}, headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"}
    )
    assert r.status_code == 200
    evil = await fake.client.post(
        "/engines/unload", json={"all": True}, headers={"Origin": "http://evil.example"}
    )
    assert evil.status_code == 403


def test_public_paths_are_the_static_files_only() -> None:
    assert ui.public("GET", "/ui/")
    assert ui.public("GET", "/ui")
    assert ui.public("HEAD", "/ui/js/app.js")
    assert not ui.public("POST", "/ui/")
    assert not ui.public("GET", "/uix")
    assert not ui.public("GET", "/models")


def _files() -> list[tuple[str, str]]:
    return [
        (str(p.relative_to(ui.STATIC)), p.read_text(encoding="utf-8"))
        for p in sorted(ui.STATIC.rglob("*"))
        if p.is_file() and p.suffix in (".html", ".css", ".js", ".svg")
    ]


def test_static_files_are_small_and_only_served_kinds() -> None:
    files = [p for p in ui.STATIC.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= set(ui.MEDIA_TYPES)
    total = sum(p.stat().st_size for p in files)
    assert 0 < total < BUDGET, total
    assert {"index.html", "app.css", "js/app.js", "js/markdown.js"} <= {n for n, _ in _files()}


URL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[/"'`\s)]""", re.I)
#: The only absolute URLs the files may hold: XML namespaces (never fetched).
ALLOWED = ("http://www.w3.org/2000/svg",)


def test_no_static_file_references_another_origin() -> None:
    for name, text in _files():
        stripped = text
        for ok in ALLOWED:
            stripped = stripped.replace(ok, "")
        found = URL.findall(stripped)
        assert not found, (name, found)
        assert "@import" not in text, name
        if name.endswith(".html"):
            # the CSP admits no inline script: none is written (no <script> body, no on* attribute)
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), name
            assert not re.search(r"<[^>]*\son\w+=", text), name
        if name.endswith(".js"):
            # nothing parses HTML: model text only becomes text nodes
            for sink in (
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ):
                assert sink not in text, (name, sink)
