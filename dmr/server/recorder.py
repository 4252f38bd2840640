"""The request/response recorder behind GET /engines/requests, in DMR's JSON shape (reference §7).

The last N exchanges per model (a ring); base64 media in requests is truncated to 100 characters;
streamed responses are recorded collapsed into one chat.completion-like object by the serving code.
Live followers get `event: new_request` with a one-record group as each exchange completes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from typing import Any

from dmr import config

_B64_RE = re.compile(r"(data:[^;\"]+;base64,)([A-Za-z0-9+/=]{100})[A-Za-z0-9+/=]+")


def truncate_media(body: str) -> str:
    return _B64_RE.sub(r"\1\2...", body)


class Recorder:
    def __init__(self, size: int | None = None) -> None:
        self.size = size or config.RECORDER_SIZE
        self.records: dict[str, deque[dict[str, Any]]] = {}
        self.models: dict[str, str] = {}  # model ID -> ref it was used by
        self.configs: dict[str, dict[str, Any]] = {}
        self.followers: set[asyncio.Queue[dict[str, Any]]] = set()

    def record(
        self,
        *,
        model_id: str,
        model: str,
        method: str,
        url: str,
        request: str,
        response: str,
        error: str | None,
        status: int,
        user_agent: str,
        origin: str,
        config_doc: dict[str, Any] | None = None,
        dialect: str = "openai",
    ) -> None:
        rec = {
            "id": f"{model_id}_{time.time_ns()}",
            "model": model,
            "method": method,
            "url": url,
            "request": truncate_media(request),
            "response": response,
            "error": error,
            "timestamp": int(time.time()),
            "status_code": status or 408,
            "user_agent": user_agent,
            "origin": origin,
            "dialect": dialect,  # openai, ollama, anthropic or responses: which API the client spoke
        }
        ring = self.records.setdefault(model_id, deque(maxlen=self.size))
        ring.append(rec)
        self.models[model_id] = model
        if config_doc is not None:
            self.configs[model_id] = config_doc
        group = self._group(model_id, [rec])
        for q in list(self.followers):
            if q.qsize() < 1000:
                q.put_nowait(group)

    def _group(self, model_id: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "count": len(records),
            "model": self.models.get(model_id, model_id),
            "config": self.configs.get(model_id, {}),
            "records": records,
        }

    def snapshot(self, model_ids: set[str] | None = None) -> list[dict[str, Any]]:
        return [
            self._group(mid, list(ring))
            for mid, ring in self.records.items()
            if model_ids is None or mid in model_ids
        ]

    def drop(self, model_id: str) -> None:
        self.records.pop(model_id, None)
