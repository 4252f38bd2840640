"""The fast tier's server: the real Starlette app, store and scheduler, in process, over the scripted
FakeEngine (dmr/engine/fake.py). No model file, no compiled module, no subprocess.

`FakeServer.client` is an httpx client over the ASGI app; `FakeServer.raw` drives the app at the ASGI level
for what httpx cannot show: the bytes as they stream and a client that disconnects mid-response.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from dmr.engine.fake import FakeEngine, FakeScript
from dmr.engine.protocol import Engine
from dmr.models.package import package
from dmr.models.store import Store
from dmr.scheduling.backends import Backend, BackendRegistry, llama_backend, vllm_placeholder
from dmr.scheduling.llama_flags import LLAMA_FLAGS
from dmr.scheduling.loader import Loader
from dmr.scheduling.scheduler import Scheduler
from dmr.server.app import build_app

MODEL = "ai/fake:latest"


def write_tiny_gguf(path: Path, ctx: int = 4096) -> Path:
    """A valid GGUF (written by the `gguf` package) that the fake engine 'runs': only its header is read."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(ctx)
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_head_count(1)
    w.add_file_type(1)
    w.add_tensor("blk.0.weight", np.zeros((4, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def sse_events(self) -> list[Any]:
        """The SSE data payloads, JSON-decoded ([DONE] stays a string)."""
        out: list[Any] = []
        for block in self.body.decode().split("\n\n"):
            if block.startswith("data: "):
                data = block[len("data: ") :]
                out.append(data if data == "[DONE]" else json.loads(data))
        return out


class FakeServer:
    def __init__(
        self,
        root: Path,
        script: FakeScript | None = None,
        *,
        api_key: str | None = None,
        max_body: int | None = None,
        origins: list[str] | None = None,
        allowed_hosts: list[str] | None = None,
    ) -> None:
        self.script = script or FakeScript()
        self.engines: list[FakeEngine] = []
        self.load_kwargs: list[dict[str, Any]] = []  # what each load was asked for
        self.load_error: Exception | None = None  # set to make the next loads fail with it
        self.store = Store(root / "store")
        gguf = write_tiny_gguf(root / "fake.gguf")
        package(self.store, gguf=gguf, created=1700000000, tags=[MODEL])
        self.loader = Loader(1 << 40)
        # the fake backend runs GGUF here, ahead of in-process llama.cpp (which stays listed)
        # it takes llama-server's flags, under its own name
        flags = replace(LLAMA_FLAGS, backend="fake")
        fake = Backend(
            "fake", frozenset({"gguf"}), self._load, lambda path, n_ctx: 1 << 20, self._status, flags
        )
        self.backends = BackendRegistry([fake, llama_backend(), vllm_placeholder()])
        self.scheduler = Scheduler(
            self.store, state_path=root / "state.json", loader=self.loader, backends=self.backends
        )
        self.app: Starlette = build_app(
            self.store,
            self.scheduler,
            log_dir=root / "logs",
            api_key=api_key or "",
            max_body=max_body,
            origins=origins or [],
            allowed_hosts=allowed_hosts or [],
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://localhost:12434", timeout=30
        )

    async def _load(self, path: Path, kwargs: dict[str, Any]) -> Engine:
        self.load_kwargs.append(dict(kwargs))
        if self.load_error is not None:
            raise self.load_error
        engine = FakeEngine(self.script)
        self.engines.append(engine)
        return engine

    def _status(self) -> str:
        return f"Running: scripted fake engine ({len(self.engines)} loaded)"

    @property
    def engine(self) -> FakeEngine:
        assert self.engines, "no model loaded yet"
        return self.engines[-1]

    async def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        disconnect_after: int | None = None,
        leave_after_s: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> RawResponse:
        """One request at the ASGI level. The client leaves after `disconnect_after` body chunks, or
        `leave_after_s` seconds; what the app sends after that is dropped, as a closed socket drops it."""
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body or b""
        hdrs = {"host": "localhost:12434", "content-type": "application/json", **(headers or {})}
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path.partition("?")[0],
            "raw_path": path.partition("?")[0].encode(),
            "query_string": path.partition("?")[2].encode(),
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()]
            + [(b"content-length", str(len(data)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("localhost", 12434),
        }
        gone = asyncio.Event()
        sent_body = False
        response: RawResponse | None = None

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": data, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal response
            if gone.is_set():
                return
            if message["type"] == "http.response.start":
                response = RawResponse(
                    message["status"], {k.decode(): v.decode() for k, v in message.get("headers", [])}
                )
            elif message["type"] == "http.response.body":
                assert response is not None
                if message.get("body"):
                    response.chunks.append(message["body"])
                if disconnect_after is not None and len(response.chunks) >= disconnect_after:
                    gone.set()
                if not message.get("more_body", False):
                    gone.set()

        timer = asyncio.get_running_loop().call_later(leave_after_s, gone.set) if leave_after_s else None
        try:
            await self.app(scope, receive, send)  # type: ignore[arg-type]
        finally:
            if timer is not None:
                timer.cancel()
        return response or RawResponse(0, {})

    async def close(self) -> None:
        await self.client.aclose()
        await self.scheduler.close()
