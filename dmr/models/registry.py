"""OCI registry client: oras-py's Registry with its request path replaced.

oras-py 0.2.43 quirks fixed here (environment.md): `do_request` retried *everything* 5 times with
~131 s of sleeps and no timeout (a dead registry hung the CLI) -> bounded retries with backoff, on
network errors and 5xx only, with connect/read timeouts; auth is attached up front (see auth.py);
manifests are fetched and pushed as raw bytes because the model ID is the hash of those exact bytes
(oras re-serialises JSON). Blob downloads are not oras' (no verify/resume/progress): see blobs.py.
oras still provides URL building, `blob_exists` and the chunked upload (we always chunk: its
monolithic upload reads the whole blob into memory).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import oras.container
import oras.provider
import requests

from dmr.errors import ModelNotFoundError, RegistryError
from dmr.models import artifact
from dmr.models.auth import Authenticator, Credentials, RegistryAuthError, load_docker_credentials
from dmr.models.reference import Reference

USER_AGENT = "dmr-model-distribution"
CHUNK_SIZE = 16 << 20
_RETRY_STATUS = frozenset({500, 502, 503, 504})


class RegistryClient(oras.provider.Registry):  # type: ignore[misc]
    """Talks to one registry host. Thread-safe for concurrent blob GETs (one requests.Session,
    one Authenticator)."""

    def __init__(
        self,
        ref: Reference,
        credentials: Credentials | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        super().__init__(hostname=ref.host, insecure=ref.scheme == "http", auth_backend="basic")
        self.ref = ref
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self.backoff = backoff
        creds = credentials if credentials is not None else load_docker_credentials(ref.registry)
        self.authenticator = Authenticator(creds, timeout=read_timeout)
        self.session.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.container = oras.container.Container(ref.repository, registry=ref.host)
        #: Called with the byte count of every PATCH body (upload progress through oras' chunked_upload).
        self.on_upload: Callable[[int], None] | None = None

    # --- the request path oras calls ------------------------------------------------------------

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One logical request: auth up front, one re-auth on 401, bounded retries on network errors
        and 5xx (never on other 4xx), timeouts always."""
        hdrs = dict(headers or {})
        attempt = 0
        reauthed = False
        while True:
            sent = self.authenticator.header()
            try:
                response: requests.Response = self.session.request(
                    method,
                    url,
                    data=data,
                    json=json,
                    headers={**hdrs, **sent},
                    stream=stream,
                    timeout=self.timeout,
                    allow_redirects=True,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.retries:
                    raise RegistryError(f"registry {self.ref.registry} unreachable: {_reason(exc)}") from exc
                self._sleep(attempt)
                attempt += 1
                continue
            if response.status_code == 401 and not reauthed:
                reauthed = True
                response.close()
                if self.authenticator.challenge(self.session, response, sent.get("Authorization")):
                    continue
                raise RegistryAuthError(f"unauthorized: {self.ref.registry} requires valid credentials")
            if response.status_code == 401:
                response.close()
                raise RegistryAuthError(f"unauthorized: {self.ref.registry} refused the credentials")
            if response.status_code in _RETRY_STATUS and attempt < self.retries:
                response.close()
                self._sleep(attempt)
                attempt += 1
                continue
            if method == "PATCH" and self.on_upload is not None and response.status_code < 300 and data:
                self.on_upload(len(data))
            return response

    def _sleep(self, attempt: int) -> None:
        time.sleep(self.backoff * (2**attempt))

    # --- manifests ------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.prefix}://{self.ref.host}/v2/{self.ref.repository}/{path}"

    def get_manifest_raw(self, ref: Reference | None = None) -> tuple[bytes, str]:
        """(raw manifest bytes, digest) of `ref` (default: the client's reference)."""
        r = ref or self.ref
        accept = ", ".join(artifact.MANIFEST_TYPES)
        resp = self.do_request(self.url(f"manifests/{r.reference}"), "GET", headers={"Accept": accept})
        if resp.status_code == 404:
            raise ModelNotFoundError(f"model {r} not found on {r.registry}")
        _check(resp, f"fetch manifest of {r}")
        raw = resp.content
        digest = artifact.sha256_digest(raw)
        if r.digest is not None and digest != r.digest:
            raise RegistryError(f"manifest of {r} hashes to {digest}, not the requested digest")
        return raw, digest

    def put_manifest(self, raw: bytes, tag: str) -> str:
        media_type = artifact.MANIFEST_OCI
        resp = self.do_request(
            self.url(f"manifests/{tag}"), "PUT", data=raw, headers={"Content-Type": media_type}
        )
        _check(resp, f"push manifest {tag}")
        return artifact.sha256_digest(raw)

    # --- blobs ------------------------------------------------------------------------------------

    def blob_url(self, digest: str) -> str:
        return self.url(f"blobs/{digest}")

    def open_blob(self, digest: str, offset: int = 0) -> requests.Response:
        """A streaming GET of a blob, from `offset` via Range. The caller checks 200 vs 206."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.do_request(self.blob_url(digest), "GET", headers=headers, stream=True)
        if resp.status_code == 404:
            resp.close()
            raise ModelNotFoundError(f"blob {digest} not found on {self.ref.registry}")
        if resp.status_code == 416:
            return resp
        _check(resp, f"fetch blob {digest}")
        return resp

    def has_blob(self, digest: str) -> bool:
        return bool(self.blob_exists({"digest": digest}, self.container))

    def push_blob(self, path: Path, digest: str, size: int) -> None:
        """Chunked upload (bounded memory) of a local blob the registry does not have yet."""
        resp = self.chunked_upload(str(path), self.container, {"digest": digest, "size": size}, CHUNK_SIZE)
        _check(resp, f"push blob {digest}")

    def push_bytes(self, data: bytes, digest: str) -> None:
        start = self.do_request(self.url("blobs/uploads/"), "POST", headers={"Content-Length": "0"})
        _check(start, "start upload")
        location = self._get_location(start, self.container)
        sep = "&" if "?" in location else "?"
        resp = self.do_request(
            f"{location}{sep}digest={digest}",
            "PUT",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        _check(resp, f"push blob {digest}")


def _check(resp: requests.Response, what: str) -> None:
    if resp.status_code < 300:
        return
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        detail = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
    except ValueError:
        detail = resp.text[:200]
    if resp.status_code in (401, 403):
        raise RegistryAuthError(f"{what}: denied ({resp.status_code}) {detail}".strip())
    raise RegistryError(f"{what}: registry answered {resp.status_code} {detail}".strip())


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "NewConnectionError" in text:
        return "connection refused"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return text[:200]
