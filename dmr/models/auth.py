"""Registry authentication: anonymous, Basic and scoped bearer tokens, credentials from Docker's config.

Why not oras-py's auth backends (environment.md): "token" fails against Basic registries, "basic" sends
every request (blob bodies too) unauthenticated first, and the token backend reuses a pull-only token
when a push needs `pull,push`. Here the scheme is learnt from the first 401 challenge and then attached
up front; a 401 carrying a new scope fetches a token for that scope.

`~/.docker/config.json` is only ever read (oras' `login()` would write it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from dmr.errors import RegistryError

_CHALLENGE_RE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]*))')


class RegistryAuthError(RegistryError, PermissionError):
    """The registry refused our credentials (DMR answers 401)."""

    http_status = 401
    error_type = "authentication_error"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    #: A ready bearer token (DMR's request `bearer-token`): sent as is, no token exchange.
    bearer_token: str = ""

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.bearer_token)


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _config_keys(registry: str) -> list[str]:
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"]


def load_docker_credentials(registry: str, path: Path | None = None) -> Credentials:
    """Credentials for `registry` from Docker's config (auths, credHelpers, credsStore); anonymous
    when there are none or the file is unreadable."""
    cfg_path = path or docker_config_path()
    try:
        doc: dict[str, Any] = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return Credentials()
    keys = _config_keys(registry)
    helpers = doc.get("credHelpers") or {}
    helper = next((helpers[k] for k in keys if k in helpers), None) or doc.get("credsStore")
    auths = doc.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials(username="<token>", password=str(entry["identitytoken"]))
        if entry.get("auth"):
            with contextlib.suppress(ValueError):
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                return Credentials(user, pw)
        if entry.get("username"):
            return Credentials(str(entry["username"]), str(entry.get("password", "")))
    if helper:
        return _from_helper(str(helper), keys[0])
    return Credentials()


def _from_helper(helper: str, server: str) -> Credentials:
    try:
        out = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=server.encode(),
            capture_output=True,
            timeout=10,
            check=True,
        )
        doc = json.loads(out.stdout)
        return Credentials(str(doc.get("Username", "")), str(doc.get("Secret", "")))
    except (OSError, subprocess.SubprocessError, ValueError):
        return Credentials()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_RE.finditer(rest)
    }
    return scheme.lower(), params


class Authenticator:
    """Per-registry auth state shared by the threads of one client. Thread-safe."""

    def __init__(self, credentials: Credentials, timeout: float = 30.0) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self._lock = threading.Lock()
        self._header: str | None = None
        if credentials.bearer_token:
            self._header = f"Bearer {credentials.bearer_token}"
        self._scopes: set[str] = set()

    def header(self) -> dict[str, str]:
        with self._lock:
            return {"Authorization": self._header} if self._header else {}

    def challenge(self, session: requests.Session, response: requests.Response, sent: str | None) -> bool:
        """React to a 401: returns True when a retry may now succeed."""
        header = response.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        creds = self.credentials
        with self._lock:
            if self._header != sent:
                return True  # another thread already refreshed it
            if scheme == "basic":
                if not creds.username and not creds.password:
                    return False
                token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
                new = f"Basic {token}"
            elif scheme == "bearer" and "realm" in params:
                if creds.bearer_token and not creds.username:
                    return False
                scope = params.get("scope", "")
                # Ask for every scope seen so far: one token then serves pulls and pushes alike.
                if scope:
                    self._scopes.update(scope.split(" "))
                new = f"Bearer {self._fetch_token(session, params)}"
            else:
                return False
            if new == sent:
                return False
            self._header = new
            return True

    def _fetch_token(self, session: requests.Session, params: dict[str, str]) -> str:
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query.extend(("scope", s) for s in sorted(self._scopes))
        creds = self.credentials
        auth = (creds.username, creds.password) if (creds.username or creds.password) else None
        last: Exception | None = None
        for attempt in range(3):
            try:
                r = session.get(params["realm"], params=query, auth=auth, timeout=self.timeout)
            except requests.RequestException as exc:
                last = exc
                time.sleep(0.2 * 2**attempt)
                continue
            if r.status_code in (401, 403):
                raise RegistryAuthError(f"token server refused the credentials ({r.status_code})")
            if r.status_code >= 500:
                last = RegistryError(f"token server answered {r.status_code}")
                time.sleep(0.2 * 2**attempt)
                continue
            if r.status_code != 200:
                raise RegistryError(f"token server answered {r.status_code}")
            doc = r.json()
            token = doc.get("token") or doc.get("access_token")
            if not token:
                raise RegistryError("token server answered without a token")
            return str(token)
        raise RegistryError(f"token server unreachable: {last}")
