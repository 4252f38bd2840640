"""Real registries for the tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with our own
config (no auth, htpasswd, or token auth with a tiny RS256 token server), and a loopback TCP proxy that
can cut a connection mid-stream."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import requests

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
USER, PASSWORD = "tester", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # "127.0.0.1:port"
    root: Path  # storage root
    proc: subprocess.Popen[bytes]
    auth: str
    extra: list[object] = field(default_factory=list)

    def blob_data_path(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues RS256 JWTs (x5c header) granting whatever scope a client with the right password asks."""

    def __init__(self, workdir: Path, service: str = "test-registry", issuer: str = "test-issuer") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.service, self.issuer = service, issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dmr-test-token")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .sign(self.key, hashes.SHA256())
        )
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_path = workdir / "token.crt"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[list[str]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                scopes = q.get("scope", [])
                server.requests.append(scopes)
                body = json.dumps({"token": server.token(scopes)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in scopes:
            for s in scope.split(" "):
                kind, _, rest = s.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": USER,
            "aud": self.service,
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64url(sig)}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_registry(workdir: Path, auth: str = "none") -> Registry:
    """auth: "none", "htpasswd" or "token"."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "storage"
    port = free_port()
    lines = [
        "version: 0.1",
        "log: {level: error, accesslog: {disabled: true}}",
        f"storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}",
        f"http: {{addr: 127.0.0.1:{port}, secret: dmr-test-secret}}",
    ]
    extra: list[object] = []
    if auth == "htpasswd":
        htpasswd = workdir / "htpasswd"
        out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True)
        htpasswd.write_bytes(out.stdout)
        lines.append(f"auth: {{htpasswd: {{realm: basic-realm, path: {htpasswd}}}}}")
    elif auth == "token":
        ts = TokenServer(workdir)
        extra.append(ts)
        lines.append(
            f"auth: {{token: {{realm: {ts.realm}, service: {ts.service}, issuer: {ts.issuer}, "
            f"rootcertbundle: {ts.cert_path}}}}}"
        )
    cfg = workdir / "config.yml"
    cfg.write_text("\n".join(lines) + "\n")
    with (workdir / "registry.log").open("wb") as log:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            r = requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            if r.status_code in (200, 401):
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"docker-registry did not start: {(workdir / 'registry.log').read_text()}")
        time.sleep(0.05)
    return Registry(f"127.0.0.1:{port}", root, proc, auth, extra)


class CuttingProxy:
    """TCP proxy to `target`; after `cut_after` bytes sent to the client on one connection it closes
    that connection (once, or `cuts` times), simulating a network failure mid-blob."""

    def __init__(
        self, target: str, cut_after: int | None = None, cuts: int = 1, throttle_bps: int | None = None
    ) -> None:
        host, port = target.rsplit(":", 1)
        self.throttle_bps = throttle_bps
        self.target = (host, int(port))
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.bytes_to_client = 0
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return

        def up() -> None:
            try:
                while data := client.recv(65536):
                    upstream.sendall(data)
            except OSError:
                pass
            finally:
                _close(upstream)

        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                with self._lock:
                    cut = (
                        self.cut_after is not None
                        and self.cuts_left > 0
                        and sent + len(data) > self.cut_after
                    )
                    if cut:
                        self.cuts_left -= 1
                if cut:
                    keep = max(0, (self.cut_after or 0) - sent)
                    client.sendall(data[:keep])
                    with self._lock:
                        self.bytes_to_client += keep
                    break
                client.sendall(data)
                sent += len(data)
                if self.throttle_bps:
                    time.sleep(len(data) / self.throttle_bps)
                with self._lock:
                    self.bytes_to_client += len(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def close(self) -> None:
        self._closed = True
        self.sock.close()


def _close(s: socket.socket) -> None:
    with suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


@contextmanager
def running_registry(workdir: Path, auth: str = "none") -> Iterator[Registry]:
    reg = start_registry(workdir, auth)
    try:
        yield reg
    finally:
        reg.stop()
        for e in reg.extra:
            if isinstance(e, TokenServer):
                e.stop()
