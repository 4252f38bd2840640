"""The CLI's HTTP client: finds the server, starts one when nothing answers locally, maps errors.

Every failure a user can cause or fix (server unreachable, unknown model, a 4xx/5xx answer) leaves as a
`click.ClickException`: one `Error: ...` line on stderr and exit status 1, never a traceback.
DMR's CLI does the same through the runner's plain-text errors; ours reads the OpenAI error JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import click
import httpx

import dmr
from dmr import config

USER_AGENT = f"docker-model-cli/{dmr.__version__} (dmr)"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
#: DMR's CLI retries pulls and pushes 4 times (1, 2, 4, 8 s), on network errors and these statuses only.
RETRY_STATUSES = {502, 503, 504}
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0)


#: `python -c` runs this with the working directory as sys.path[0]; it is dropped before dmr is imported.
_SERVE_WITHOUT_CWD = "import sys; sys.path.pop(0); from dmr.cli.main import main; main()"


class CliError(click.ClickException):
    """A one-line user-facing failure (exit status 1)."""


class NetworkError(CliError):
    """The connection failed or broke (retried by pull and push)."""


class HTTPStatusError(CliError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_message(resp: httpx.Response) -> str:
    """The human message of an error answer: OpenAI error JSON, DMR's plain text, or the status."""
    try:
        text = resp.read().decode(errors="replace").strip()
    except httpx.HTTPError:
        text = ""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if doc.get("message"):
            return str(doc["message"])
    return text.splitlines()[0] if text else f"HTTP {resp.status_code}"


def model_path(ref: str) -> str:
    """A model reference as a URL path: slashes stay (DMR routes take `{ref...}`), the rest is quoted."""
    return quote(ref, safe="/:@")


class Client:
    """Synchronous client of one `dmr serve` (or DMR runner) base URL."""

    def __init__(self, url: str | None = None, *, autostart: bool = True) -> None:
        self.url = (url or config.client_url()).rstrip("/")
        self.autostart = autostart
        headers = {"User-Agent": USER_AGENT}
        key = os.environ.get("DMR_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(600.0, connect=5.0)
        )
        self._checked = False

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- discovery -----------------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return (urlsplit(self.url).hostname or "") in LOCAL_HOSTS

    def reachable(self) -> bool:
        try:
            return self.http.get("/", timeout=httpx.Timeout(5.0, connect=2.0)).status_code < 500
        except httpx.HTTPError:
            return False

    def ensure(self) -> None:
        """Make sure a server answers: start `dmr serve` in the background when the host is local."""
        if self._checked:
            return
        if not self.reachable():
            if not (self.autostart and self.is_local):
                raise CliError(f"cannot reach the model runner at {self.url}; is `dmr serve` running?")
            self._start_server()
        self._checked = True

    def _start_server(self) -> None:
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        host = "127.0.0.1" if host == "localhost" else host
        port = parts.port or config.DEFAULT_PORT
        log_dir = config.log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "serve.log"
        # Not `python -m`: it puts the working directory first on sys.path, and started inside a checkout
        # the server would import the source tree's dmr (no compiled module) instead of the installed one.
        cmd = [sys.executable, "-c", _SERVE_WITHOUT_CWD, "serve", "--host", host, "--port", str(port)]
        env = {k: v for k, v in os.environ.items() if k not in ("DMR_HOST", "DMR_PORT")}
        click.echo(f"Starting the model runner on {self.url} (log: {log_path})...", err=True)
        with log_path.open("ab") as logf:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # outlives this CLI and is not hit by its Ctrl-C
            )
        (log_dir / f"serve-{port}.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + config.SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.reachable():
                return
            if proc.poll() is not None and not self.reachable():
                # Another CLI may have won the race for the port; give it a moment before failing.
                time.sleep(0.5)
                if self.reachable():
                    return
                raise CliError(f"the model runner failed to start; see {log_path}: {_last_line(log_path)}")
            time.sleep(0.2)
        raise CliError(
            f"the model runner did not answer within {config.SERVER_START_TIMEOUT_S}s; see {log_path}"
        )

    # --- requests ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kw: Any) -> httpx.Response:
        self.ensure()
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            raise NetworkError(f"the model runner at {self.url} timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"cannot reach the model runner at {self.url}: {exc}") from None
        if resp.status_code >= 400 and resp.status_code not in ok:
            raise HTTPStatusError(resp.status_code, error_message(resp))
        return resp

    def get_json(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def post_json(self, path: str, body: Any, **kw: Any) -> Any:
        resp = self.request("POST", path, json=body, **kw)
        return resp.json() if resp.content.strip() else None

    @contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        self.ensure()
        try:
            with self.http.stream(method, path, **kw) as resp:
                if resp.status_code >= 400:
                    raise HTTPStatusError(resp.status_code, error_message(resp))
                yield resp
        except httpx.TimeoutException as exc:
            raise NetworkError(f"the model runner at {self.url} timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"lost the connection to the model runner at {self.url}: {exc}") from None

    def has_model(self, ref: str) -> bool:
        resp = self.request("GET", f"/models/{model_path(ref)}", ok=(404,))
        return resp.status_code != 404

    def model(self, ref: str) -> dict[str, Any]:
        doc = self.get_json(f"/models/{model_path(ref)}")
        assert isinstance(doc, dict)
        return doc


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def sse_data(resp: httpx.Response) -> Iterator[Any]:
    """Decoded `data:` payloads of an SSE answer, up to `[DONE]`."""
    for line in resp.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except ValueError:
            continue
