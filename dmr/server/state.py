"""What every endpoint shares: the store, the scheduler, the recorder, metrics, and small helpers
(body reading with the size limit, the chat template of a loaded model, recording an exchange)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from dmr import config
from dmr.engine.chat import ChatTemplate, fallback_template
from dmr.models.store import Model, Store
from dmr.scheduling.loader import Runner
from dmr.scheduling.scheduler import Scheduler
from dmr.server.errors import HTTPError
from dmr.server.metrics import Metrics
from dmr.server.recorder import Recorder


@dataclass
class ServerState:
    store: Store
    scheduler: Scheduler
    recorder: Recorder
    max_body: int = config.MAX_BODY_BYTES
    templates: dict[str, ChatTemplate] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    metrics: Metrics = field(init=False)
    #: GET /v1/models body for one store index version (see Store.index_version)
    openai_models: tuple[tuple[tuple[int, int, int], int], bytes] | None = None

    def __post_init__(self) -> None:
        self.metrics = Metrics(self._engine_rows, self._backend_rows)

    def _backend_rows(self) -> list[tuple[str, bool, int]]:
        resident: dict[str, int] = {}
        for r in self.scheduler.runners():
            if r.spec.backend is not None and not r.loading:
                resident[r.spec.backend.name] = resident.get(r.spec.backend.name, 0) + 1
        return [(b.name, b.installed, resident.get(b.name, 0)) for b in self.scheduler.backends.all()]

    def _engine_rows(self) -> list[tuple[str, dict[str, Any], int]]:
        rows = []
        for r in self.scheduler.runners():
            if r.engine is not None and not r.loading:
                try:
                    stats = r.engine.stats()
                except Exception:
                    stats = {}
                rows.append((r.spec.ref, stats, r.spec.estimate))
        return rows

    def template(self, runner: Runner) -> ChatTemplate:
        """The artifact's template layer if present, else the GGUF's, else ChatML."""
        cached = self.templates.get(runner.model_id)
        if cached is not None:
            return cached
        engine = runner.engine
        layer = runner.spec.path.parent / "template.jinja"
        source = None
        if layer.is_file():
            source = layer.read_text(encoding="utf-8", errors="replace")
        if not source and engine is not None:
            source = engine.chat_template
        bos = engine.bos_text if engine is not None else ""
        eos = engine.eos_text if engine is not None else ""
        tmpl = ChatTemplate(source, bos, eos) if source else fallback_template(bos, eos)
        self.templates[runner.model_id] = tmpl
        return tmpl

    def record(
        self,
        request: Request,
        model: Model,
        ref: str,
        body: bytes,
        response: Any,
        error: str | None,
        status: int,
        dialect: str = "openai",
    ) -> None:
        if request.headers.get("x-preload-only", "").lower() == "true":
            return
        resp = response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)
        self.recorder.record(
            model_id=model.id,
            model=ref,
            method=request.method,
            url=request.url.path,
            request=body.decode("utf-8", "replace"),
            response=resp,
            error=error,
            status=status,
            user_agent=request.headers.get("user-agent", ""),
            origin=request.headers.get("origin", ""),
            config_doc=self.scheduler.runner_config(model.id).to_api(),
            dialect=dialect,
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes (413) without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.dmr
    return state
