"""A local Hugging Face hub (the real one is unreachable): the endpoints huggingface_hub calls for
`list_repo_tree`, `model_info` and `hf_hub_download`, serving files from a directory per repo."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = root  # root/<org>/<repo>/<files...>
        self.token = token
        self.requests: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._handle(head=True)

            def do_GET(self) -> None:
                self._handle(head=False)

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False
            ) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _handle(self, head: bool) -> None:
                url = urllib.parse.urlparse(self.path)
                path = urllib.parse.unquote(url.path)
                hub.requests.append(f"{self.command} {path}")
                if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    self._send(401, b'{"error":"unauthorized"}', {"X-Error-Code": "GatedRepo"}, head)
                    return
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"]:
                    self._api(parts[2:], head)
                elif len(parts) >= 5 and parts[2] == "resolve":
                    self._file(parts[0] + "/" + parts[1], "/".join(parts[4:]), head)
                else:
                    self._send(404, b"{}", head=head)

            def _api(self, parts: list[str], head: bool) -> None:
                repo = "/".join(parts[:2])
                d = hub.repo_dir(repo)
                if d is None:
                    self._send(
                        404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head
                    )
                    return
                if len(parts) >= 4 and parts[2] == "tree":
                    entries = []
                    for f in sorted(d.rglob("*")):
                        rel = f.relative_to(d).as_posix()
                        if f.is_dir():
                            entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": rel})
                        else:
                            data = f.read_bytes()
                            entry = {
                                "type": "file",
                                "oid": hashlib.sha1(data).hexdigest(),
                                "size": len(data),
                                "path": rel,
                            }
                            entries.append(entry)
                    body = json.dumps(entries).encode()
                else:
                    body = json.dumps(
                        {
                            "id": repo,
                            "modelId": repo,
                            "sha": COMMIT,
                            "private": False,
                            "lastModified": "2025-06-01T12:00:00.000Z",
                            "tags": [],
                            "siblings": [
                                {"rfilename": f.relative_to(d).as_posix()}
                                for f in d.rglob("*")
                                if f.is_file()
                            ],
                        }
                    ).encode()
                self._send(200, body, {"Content-Type": "application/json"}, head)

            def _file(self, repo: str, name: str, head: bool) -> None:
                d = hub.repo_dir(repo)
                f = (d / name) if d else None
                if f is None or not f.is_file():
                    self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)
                    return
                data = f.read_bytes()
                etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                headers = {
                    "X-Repo-Commit": COMMIT,
                    "ETag": etag,
                    "X-Linked-Etag": etag,
                    "X-Linked-Size": str(len(data)),
                    "Content-Type": "application/octet-stream",
                    "Accept-Ranges": "bytes",
                }
                rng = self.headers.get("Range")
                if rng and not head:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                    self._send(206, data[start:], headers)
                    return
                self._send(200, data, headers, head)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def repo_dir(self, repo: str) -> Path | None:
        # Hub repo names are case-insensitive for lookups.
        for org in self.root.iterdir() if self.root.exists() else []:
            for r in org.iterdir():
                if f"{org.name}/{r.name}".lower() == repo.lower():
                    return r
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
