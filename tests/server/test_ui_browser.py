"""The web UI (issue #15) in a real headless Chromium (Debian's chromium + chromium-driver, selenium) against
a real `dmr serve` with the real SmolLM2 and the test registry.

One server for the module (restarted once, for the settings that must persist), one browser. Every request
a page of ours makes is recorded from Chrome's performance log and must go to the server's origin only.
Screenshots of every page go to $DMR_TEST_ARTIFACTS/ui (default: under pytest's basetemp)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from dmr.models.push import push

from .conftest import MODEL
from .helpers import Server, make_store, running_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.registry_server import Registry, running_registry

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        "needs Debian's chromium and chromium-driver (scripts/test installs them)", allow_module_level=True
    )
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402

pytestmark = pytest.mark.slow

T = TypeVar("T")
PULLED = "ai/ui-pulled:latest"  # pushed to the test registry, pulled through the Models page
XSS = "<img src=x onerror=alert(1)> <script>alert(2)</script>"


class UIServer:
    """The module's server, restartable over the same store and state file."""

    def __init__(self, workdir: Path, store: Path, env: dict[str, str]) -> None:
        self.workdir, self.store, self.env = workdir, store, env
        self.stack = ExitStack()
        self.srv: Server = self.stack.enter_context(running_server(workdir, store, env=env))

    @property
    def url(self) -> str:
        return self.srv.url

    def restart(self) -> None:
        self.stack.close()
        self.stack = ExitStack()
        self.srv = self.stack.enter_context(running_server(self.workdir, self.store, env=self.env))

    def client(self) -> httpx.Client:
        return self.srv.client()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, reranker_path: Path) -> Iterator[Registry]:
    """The test registry holding a model whose blobs the server's store does not have (a pull downloads)."""
    with running_registry(tmp_path_factory.mktemp("ui-registry")) as reg:
        ref = f"{reg.host}/{PULLED}"
        push(ref, make_store(tmp_path_factory.mktemp("ui-src"), {ref: reranker_path}))
        yield reg


@pytest.fixture(scope="module")
def ui_server(
    tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, registry: Registry
) -> Iterator[UIServer]:
    store = tmp_path_factory.mktemp("ui-store")
    make_store(store, {MODEL: smollm2_path})
    env = {"DMR_CONTEXT_SIZE": "2048", "DMR_INSECURE_REGISTRY": "1"}
    s = UIServer(tmp_path_factory.mktemp("ui-server"), store, env)
    try:
        yield s
    finally:
        s.stack.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("DMR_TEST_ARTIFACTS")
    out = Path(base) / "ui" if base else tmp_path_factory.getbasetemp() / "ui-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots: {out}")
    return out


class Browser:
    def __init__(self, driver: WebDriver, shots: Path) -> None:
        self.d = driver
        self.shots = shots
        self.requests: list[tuple[str, str]] = []  # (document URL, request URL)

    def go(self, base: str, page: str) -> None:
        self.d.get(f"{base}/ui/#/{page}")
        self.wait(lambda: self.d.find_element(By.ID, f"page-{page}"))

    def wait(self, fn: Callable[[], T], timeout: float = 60, what: str = "") -> T:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = fn()
            except Exception as exc:
                last = exc
            else:
                if value:
                    return value
            time.sleep(0.1)
        self.shot(f"timeout-{what or 'wait'}")
        raise AssertionError(f"timed out waiting for {what or fn}: {last}")

    def el(self, css: str) -> WebElement:
        return self.d.find_element(By.CSS_SELECTOR, css)

    def els(self, css: str) -> list[WebElement]:
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def js(self, script: str, *args: Any) -> Any:
        return self.d.execute_script(script, *args)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def drain_network(self) -> None:
        for entry in self.d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                p = msg["params"]
                self.requests.append((p.get("documentURL", ""), p["request"]["url"]))

    def alert_text(self) -> str | None:
        try:
            return str(self.d.switch_to.alert.text)
        except NoAlertPresentException:
            return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, shots: Path) -> Iterator[Browser]:
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield Browser(driver, shots)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture(autouse=True)
def _same_origin_only(browser: Browser, ui_server: UIServer) -> Iterator[None]:
    """After each test: every request a page of ours made went to the server's origin, and the console
    logged no error of ours."""
    yield
    browser.drain_network()
    ours = [(doc, url) for doc, url in browser.requests if doc.startswith("http://127.0.0.1:")]
    foreign = [url for doc, url in ours if _origin(url) != _origin(doc)]
    assert not foreign, foreign
    browser.requests.clear()
    # the page's own record of what it fetched agrees
    resources = browser.js("return performance.getEntriesByType('resource').map(e => e.name)") or []
    origin = browser.js("return location.origin")
    assert all(str(r).startswith(origin + "/") for r in resources), resources
    errors = [
        e["message"]
        for e in browser.d.get_log("browser")
        if e["level"] == "SEVERE"
        and "favicon" not in e["message"]
        and "the server responded" not in e["message"]
    ]
    assert not errors, errors


def _chat(b: Browser, text: str) -> WebElement:
    """Send `text` with Enter; wait for the answer to finish; the answer's element."""
    before = len(b.els("#messages .msg.assistant"))
    box = b.el("#prompt")
    box.clear()
    box.send_keys(text)
    from selenium.webdriver.common.keys import Keys

    box.send_keys(Keys.ENTER)
    b.wait(lambda: len(b.els("#messages .msg.assistant")) > before, 30, "answer element")
    answer = b.els("#messages .msg.assistant")[-1]
    b.wait(lambda: answer.get_attribute("data-done"), 180, "answer done")
    return answer


def _settings(b: Browser, max_tokens: int, temperature: float = 0) -> None:
    if not b.el("#chat-settings").get_attribute("open"):
        b.el("#chat-settings summary").click()
    for css, value in (("#max-tokens", str(max_tokens)), ("#temperature", str(temperature))):
        field = b.el(css)
        field.clear()
        field.send_keys(value)


def _gauge(b: Browser) -> tuple[int, int]:
    g = b.el("#context-gauge")
    return int(g.get_attribute("data-used") or 0), int(g.get_attribute("data-total") or 0)


def _new_chat(b: Browser, base: str) -> None:
    b.go(base, "chat")
    b.wait(lambda: b.els("#chat-model option"), 30, "models in the picker")
    b.el("#new-chat").click()
    b.wait(lambda: not b.els("#messages .msg"), 10, "empty conversation")


def test_root_redirects_the_browser_to_the_ui(browser: Browser, ui_server: UIServer) -> None:
    browser.d.get(ui_server.url + "/")
    browser.wait(
        lambda: browser.d.current_url == ui_server.url + "/ui/#/chat" or "/ui/" in browser.d.current_url
    )
    assert browser.d.current_url.startswith(ui_server.url + "/ui/")
    with ui_server.client() as c:  # and a client that is not a browser still reads DMR's text
        assert "The service is running" in c.get("/").text


def test_chat_two_turns_streams_and_the_context_gauge_grows(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    _new_chat(b, ui_server.url)
    _settings(b, max_tokens=16)
    assert _gauge(b) == (0, 2048)
    from selenium.webdriver.common.keys import Keys

    box = b.el("#prompt")
    box.send_keys("My name is Ada.", Keys.SHIFT, Keys.ENTER, Keys.NULL, "Say hello to me.")
    assert "\n" in box.get_attribute("value")  # Shift+Enter adds a line, sends nothing
    assert not b.els("#messages .msg.user")
    box.send_keys(Keys.ENTER)
    # streamed: text shows while the answer is still streaming (the stop button is up)
    b.wait(lambda: b.els("#messages .msg.assistant.streaming"), 30, "streaming answer")
    seen = b.wait(
        lambda: b.js(
            "const m = document.querySelector('#messages .msg.assistant');"
            "const t = m ? m.querySelector('.content').textContent : '';"
            "return m && m.classList.contains('streaming') && t.length > 0 ? t"
            " : (m && m.dataset.done ? 'DONE' : '')"
        ),
        120,
        "partial text",
    )
    first = b.els("#messages .msg.assistant")[-1]
    b.wait(lambda: first.get_attribute("data-done"), 180, "first answer")
    assert first.get_attribute("data-done") == "complete"
    assert seen != "DONE", "no text was shown before the answer completed"
    text1 = first.find_element(By.CSS_SELECTOR, ".content").text
    assert text1.strip()
    stats = first.find_element(By.CSS_SELECTOR, ".stats").text
    assert "TTFT" in stats and "tokens/s" in stats and "tokens" in stats
    used1, total = _gauge(b)
    assert 0 < used1 < total
    b.shot("chat")

    second = _chat(b, "What is my name?")
    assert second.get_attribute("data-done") == "complete"
    used2, _ = _gauge(b)
    assert used2 > used1  # the whole conversation went again, plus the new turn
    assert len(b.els("#messages .msg.user")) == 2
    # the second request carried the first turn: the recorder saw all of it
    with ui_server.client() as c:
        recs = [r for g in c.get("/engines/requests").json() for r in g["records"]]
    sent = json.loads(recs[-1]["request"])["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert (
        "Ada" in sent[0]["content"]
        and sent[1]["content"].strip()
        and sent[2]["content"] == "What is my name?"
    )
    assert recs[-1]["user_agent"].startswith("Mozilla/")
    # conversations stay in the browser: after a reload the two turns are still there
    b.d.refresh()
    b.wait(lambda: len(b.els("#messages .msg.user")) == 2, 20, "conversation after reload")
    b.shot("chat-two-turns")
    b.d.set_window_size(390, 844)  # a phone
    time.sleep(0.3)
    b.shot("chat-phone")
    assert b.js("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    b.d.set_window_size(1280, 860)


def test_stop_aborts_the_answer_mid_stream(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    _new_chat(b, ui_server.url)
    _settings(b, max_tokens=400)
    b.el("#prompt").send_keys("Count from 1 to 300, one number per line.")
    b.el("#send").click()
    b.wait(lambda: b.el("#stop").is_displayed(), 30, "stop button")
    answer = b.els("#messages .msg.assistant")[-1]
    b.wait(lambda: len(answer.find_element(By.CSS_SELECTOR, ".content").text) > 3, 120, "some streamed text")
    b.el("#stop").click()
    b.wait(lambda: answer.get_attribute("data-done"), 20, "stopped")
    assert answer.get_attribute("data-done") == "stopped"
    assert "stopped" in answer.find_element(By.CSS_SELECTOR, ".stats").text
    assert b.el("#send").is_displayed() and not b.el("#stop").is_displayed()
    shown = answer.find_element(By.CSS_SELECTOR, ".content").text
    time.sleep(1.5)
    assert answer.find_element(By.CSS_SELECTOR, ".content").text == shown  # nothing arrives after the stop
    # the server stopped generating: the slot is free again well before 400 tokens
    with ui_server.client() as c:
        deadline = time.monotonic() + 30
        while any(p["in_use"] for p in c.get("/engines/ps").json()):
            assert time.monotonic() < deadline, "the aborted request kept running"
            time.sleep(0.2)
        done = [r for g in c.get("/engines/requests").json() for r in g["records"]][-1]
        if done["response"]:
            usage = json.loads(done["response"]).get("usage") or {}
            assert usage.get("completion_tokens", 0) < 400


def test_model_output_with_html_is_shown_as_text(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    # the renderer, with exactly the text of the issue (and markdown around it), through a stored conversation
    conv = {
        "id": "cxss",
        "title": "xss",
        "model": MODEL,
        "system": "",
        "temperature": "",
        "top_p": "",
        "max_tokens": "",
        "used": 0,
        "estimated": False,
        "messages": [
            {"role": "user", "content": XSS},
            {
                "role": "assistant",
                "content": f"**Sure**: {XSS}\n\n```html\n{XSS}\n```\n\n"
                "- `<b>code</b>` and [x](javascript:alert(3))\n<think>no</think>",
                "reasoning": "<img src=y onerror=alert(4)>",
                "stats": {"tokens": 3},
            },
        ],
    }
    b.go(ui_server.url, "chat")
    b.js("localStorage.setItem('dmr.chats', JSON.stringify({current: 'cxss', list: [arguments[0]]}))", conv)
    b.d.refresh()
    b.wait(lambda: len(b.els("#messages .msg")) == 2, 20, "stored conversation")
    msgs = b.el("#messages")
    assert not msgs.find_elements(By.CSS_SELECTOR, "img, script, iframe, object, embed, b")
    assert not msgs.find_elements(By.CSS_SELECTOR, "a[href^='javascript']")
    assert XSS in msgs.text
    assert msgs.find_element(By.CSS_SELECTOR, ".codeblock code").text == XSS
    assert msgs.find_element(By.CSS_SELECTOR, ".msg.assistant strong").text == "Sure"
    # and a real answer from SmolLM2 asked to repeat it
    _new_chat(b, ui_server.url)
    _settings(b, max_tokens=40)
    answer = _chat(b, f"Repeat exactly: {XSS}")
    assert answer.get_attribute("data-done") == "complete"
    assert not b.el("#messages").find_elements(By.CSS_SELECTOR, "img, script, iframe, object, embed")
    assert XSS in b.el("#messages .msg.user").text
    print("SmolLM2 said:", answer.find_element(By.CSS_SELECTOR, ".content").text)
    time.sleep(0.5)
    assert b.alert_text() is None
    assert b.js("return typeof window.__xss") == "undefined"
    b.shot("chat-html-as-text")


def test_requests_shows_the_chat_prompt_tokens_and_json(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    _new_chat(b, ui_server.url)  # a chat of the page's own, then its record
    _settings(b, max_tokens=8)
    _chat(b, "My name is Ada.")
    _chat(b, "What is my name?")
    b.go(ui_server.url, "requests")
    b.wait(lambda: b.el("#requests-live").text == "live", 20, "live stream")
    rows = b.wait(lambda: b.els("#requests-body tr[data-id]"), 20, "recorded requests")
    row = next(r for r in rows if "What is my name?" in r.text)
    assert "openai" in row.text  # the dialect
    row.click()
    b.wait(lambda: b.els("#request-detail .overview"), 10, "overview")
    detail = b.el("#request-detail")
    assert b.el("#request-detail .prompt-text").text == "What is my name?"
    assert b.el("#request-detail .response-text").text.strip()
    cards = {
        c.find_element(By.CSS_SELECTOR, ".card-label").text: c.find_element(
            By.CSS_SELECTOR, ".card-value"
        ).text
        for c in detail.find_elements(By.CSS_SELECTOR, ".card")
    }
    assert int(cards["Prompt tokens"]) > 0 and int(cards["Completion tokens"]) > 0
    assert int(cards["Total tokens"]) == int(cards["Prompt tokens"]) + int(cards["Completion tokens"])
    b.shot("requests")
    b.el("#request-detail .tab[data-tab='Request']").click()
    req = json.loads(b.el("#request-detail .request-json").text)
    assert req["stream"] is True and req["messages"][-1]["content"] == "What is my name?"
    b.el("#request-detail .tab[data-tab='Response']").click()
    resp = json.loads(b.el("#request-detail .response-json").text)
    assert resp["object"] == "chat.completion" and resp["usage"]["total_tokens"] == int(cards["Total tokens"])
    # live: a request made elsewhere shows up without a reload
    count = len(b.els("#requests-body tr[data-id]"))
    with ui_server.client() as c:
        r = c.post(
            "/engines/v1/chat/completions",
            json={"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "live one"}]},
        )
        assert r.status_code == 200
    b.wait(lambda: len(b.els("#requests-body tr[data-id]")) == count + 1, 20, "live request")
    assert "live one" in b.els("#requests-body tr[data-id]")[0].text
    b.shot("requests-detail")


def test_models_page_lists_inspects_tags_and_deletes(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    b.go(ui_server.url, "models")
    row = b.wait(lambda: b.el(f"#models-body tr[data-tags~='{MODEL}']"), 20, "model row")
    for value in ("134.52M", "Q4_1", "llama", "8192", "92.10MiB"):
        assert value in row.text
    b.shot("models")
    row.find_element(By.XPATH, ".//button[text()='Inspect']").click()
    b.wait(lambda: "general.architecture" in b.el("#inspect").text, 10, "GGUF metadata")
    # tag, then delete the new tag (with the confirmation)
    row.find_element(By.XPATH, ".//button[text()='Tag']").click()
    field = b.wait(lambda: b.el("dialog.modal input[name='target']"), 5, "tag dialog")
    field.send_keys("ui/extra:v1")
    b.el("dialog.modal button[value='ok']").click()
    extra = b.wait(lambda: b.el("#models-body tr[data-tags~='ui/extra:v1']"), 10, "tagged")
    assert MODEL in extra.get_attribute("data-tags")
    untag = "#models-body span.tag[data-tag='ui/extra:v1'] button.untag"
    b.el(untag).click()
    b.wait(lambda: b.el("dialog.modal"), 5, "confirmation")
    b.el("dialog.modal button[value='cancel']").click()  # cancelled: nothing removed
    b.wait(lambda: not b.els("dialog.modal"), 5, "dialog closed")
    with ui_server.client() as c:
        assert c.get("/models/ui/extra:v1").status_code == 200
    b.el(untag).click()
    b.wait(lambda: b.el("dialog.modal"), 5, "confirmation")
    b.el("dialog.modal button[value='ok']").click()
    b.wait(lambda: not b.els("#models-body tr[data-tags~='ui/extra:v1']"), 10, "untagged")
    with ui_server.client() as c:
        assert c.get("/models/ui/extra:v1").status_code == 404
        assert c.get(f"/models/{MODEL}").status_code == 200  # the model stays under its own tag


def test_pull_from_the_registry_reaches_100_percent(
    browser: Browser, ui_server: UIServer, registry: Registry
) -> None:
    b = browser
    pulled = f"{registry.host}/{PULLED}"
    b.go(ui_server.url, "models")
    b.el("#pull-ref").send_keys(pulled)
    b.el("#pull").click()
    b.wait(lambda: b.el("#pull-progress").get_attribute("data-state"), 180, "pull finished")
    assert b.el("#pull-progress").get_attribute("data-state") == "done", b.el("#pull-status").text
    assert b.el("#pull-total").get_attribute("data-percent") == "100"
    layers = b.els("#pull-progress .progress.layer")
    assert layers and all(x.get_attribute("data-percent") == "100" for x in layers)
    assert "success" in b.el("#pull-status").text.lower()
    row = b.wait(lambda: b.el(f"#models-body tr[data-tags~='{pulled}']"), 20, "pulled model listed")
    b.shot("models-pulled")
    # delete it, with the confirmation
    row.find_element(By.CSS_SELECTOR, "button.delete").click()
    b.wait(lambda: b.el("dialog.modal"), 5, "confirmation")
    b.el("dialog.modal button[value='ok']").click()
    b.wait(lambda: not b.els(f"#models-body tr[data-tags~='{pulled}']"), 20, "deleted")
    with ui_server.client() as c:
        assert c.get(f"/models/{pulled}").status_code == 404


def test_running_shows_the_model_and_unload_works(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    with ui_server.client() as c:  # make sure it is resident
        c.post(
            "/engines/v1/chat/completions",
            json={"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
        )
    b.go(ui_server.url, "running")
    row = b.wait(lambda: b.el("#running-body tr[data-model]"), 20, "running model")
    assert "llama.cpp" in row.text and "completion" in row.text and "MiB" in row.text
    b.wait(lambda: re.search(r"\d", b.el("#running-body tr[data-model] .until").text), 10, "idle countdown")
    b.shot("running")
    row.find_element(By.CSS_SELECTOR, "button.unload").click()
    b.wait(lambda: not b.els("#running-body tr[data-model]"), 20, "unloaded")
    with ui_server.client() as c:
        assert c.get("/engines/ps").json() == []


def test_logs_show_a_new_line_arriving(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    b.go(ui_server.url, "logs")
    b.wait(lambda: b.el("#logs-live").text == "live", 20, "log stream")
    b.wait(lambda: b.els("#log .line"), 20, "existing lines")
    before = len(b.els("#log .line"))
    with ui_server.client() as c:  # a load logs "loading ai/smollm2 (...)"
        c.post(
            "/engines/v1/chat/completions",
            json={"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
        )
    b.wait(lambda: len(b.els("#log .line")) > before, 30, "a new log line")
    assert any("loading" in x.text for x in b.els("#log .line")[before:])
    b.el("#logs-filter").send_keys("loaded")
    visible = [x for x in b.els("#log .line") if x.is_displayed()]
    assert visible and all("loaded" in x.text for x in visible)
    b.shot("logs")
    b.el("#logs-pause").click()
    assert b.el("#logs-live").text == "paused"
    b.el("#logs-pause").click()


def test_dashboard_charts_are_not_empty_after_traffic(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    b.go(ui_server.url, "dashboard")
    with ui_server.client() as c:
        c.post(
            "/engines/v1/chat/completions",
            json={"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]},
        )

    def points(title: str) -> int:
        return int(b.el(f"#charts figure[data-title^='{title}']").get_attribute("data-points"))

    b.wait(lambda: points("Tokens/s") > 0 and points("Time to first token") > 0, 30, "tokens/s and TTFT")
    b.wait(
        lambda: (
            points("Requests in flight") > 0 and points("Memory") > 0 and points("Requests per minute") > 0
        ),
        30,
        "charts",
    )
    assert b.els("#charts figure[data-title^='Tokens/s'] polyline")
    assert b.els("#charts figure[data-title^='Memory'] rect.bar-fill")
    assert b.els("#charts figure[data-title^='Requests per minute'] rect.bar-fill")
    b.shot("dashboard")


def test_context_size_set_in_running_persists_across_a_restart(browser: Browser, ui_server: UIServer) -> None:
    b = browser
    b.go(ui_server.url, "running")
    b.wait(lambda: b.els(f"#cfg-model option[value='{MODEL}']"), 20, "model in the settings")
    from selenium.webdriver.support.ui import Select

    Select(b.el("#cfg-model")).select_by_value(MODEL)
    ctx = b.el("#cfg-context")
    ctx.clear()
    ctx.send_keys("1536")
    keep = b.el("#cfg-keep-alive")
    keep.clear()
    keep.send_keys("10m")
    b.el("#cfg-save").click()
    b.wait(lambda: b.el("#configure").get_attribute("data-saved"), 20, "saved")
    b.shot("running-settings")
    b.d.get("about:blank")  # the page's pollers would log the refused connections of the restart
    ui_server.restart()
    b.go(ui_server.url, "running")
    b.wait(lambda: b.els(f"#cfg-model option[value='{MODEL}']"), 20, "model in the settings")
    Select(b.el("#cfg-model")).select_by_value(MODEL)
    b.wait(lambda: b.el("#cfg-context").get_attribute("value") == "1536", 20, "persisted context size")
    assert b.el("#cfg-keep-alive").get_attribute("value") == "10m"
    # and the chat's gauge uses it
    b.go(ui_server.url, "chat")
    b.wait(lambda: _gauge(b)[1] == 1536, 20, "context window in the gauge")


def test_with_an_api_key_the_page_asks_for_it_and_sends_it(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path
) -> None:
    store = tmp_path_factory.mktemp("ui-key-store")
    make_store(store, {MODEL: smollm2_path})
    with running_server(tmp_path_factory.mktemp("ui-key"), store, env={"DMR_API_KEY": "s3cret"}) as srv:
        if httpx.get(srv.url + "/ui/").status_code == 401:
            pytest.skip(
                "the API key guards /ui/ itself: dmr/server/app.py's Hardening must let ui.public() pass"
            )
        b = browser
        b.d.get(srv.url + "/ui/#/models")
        key = b.wait(lambda: b.el("dialog.modal input[name='key']"), 20, "key dialog")
        key.send_keys("wrong")
        b.el("dialog.modal button[value='ok']").click()
        key = b.wait(lambda: b.el("dialog.modal input[name='key']"), 20, "key dialog again")
        assert "rejected" in b.el("dialog.modal h3").text
        key.send_keys("s3cret")
        b.el("dialog.modal button[value='ok']").click()
        b.wait(lambda: b.els(f"#models-body tr[data-tags~='{MODEL}']"), 20, "models with the key")
        b.go(srv.url, "logs")
        b.wait(lambda: b.el("#logs-live").text == "live", 20, "log stream with the key")
        assert not b.els("dialog.modal")
        b.shot("api-key")
        b.d.get("about:blank")
