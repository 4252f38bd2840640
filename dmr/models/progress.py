"""DMR's JSON-lines progress objects (pull, push, load), throttled per layer.

Wire shape (reference §3.6): `{"type":"progress|success|warning|error","message":..,"total":..,
"layer":{"id":..,"size":..,"current":..},"mode":"pull|push"}`. A layer update is emitted when 100 ms or
1 MiB have passed since the last one for that layer, and always at the layer's end, so a client sees
steady movement without one line per socket read.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: A progress sink: gets each event as a dict ready for json.dumps.
ProgressCallback = Callable[[dict[str, Any]], None]

MIN_INTERVAL_S = 0.1
MIN_BYTES = 1 << 20


def human_size(n: float) -> str:
    """DMR's "Downloaded: 12.34 MB" style (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.2f} TB"


def iec_size(n: float) -> str:
    """gguf-parser-go's size string without the space: "256.35MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f}{unit}"
        n /= 1024
    return f"{n:.2f}TiB"


def to_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":")) + "\n"


class Progress:
    """Thread-safe reporter for one transfer. Layer workers call `update`; it decides when to emit."""

    def __init__(self, callback: ProgressCallback | None, mode: str, total: int = 0) -> None:
        self._cb = callback
        self.mode = mode
        self.total = total
        self._lock = threading.Lock()
        self._done: dict[str, int] = {}
        self._last: dict[str, tuple[float, int]] = {}

    def emit(self, event: dict[str, Any]) -> None:
        if self._cb is not None:
            self._cb(event)

    def message(self, text: str, kind: str = "progress") -> None:
        self.emit({"type": kind, "message": text, "mode": self.mode})

    def success(self, text: str) -> None:
        self.emit({"type": "success", "message": text, "mode": self.mode})

    def update(self, layer_id: str, size: int, current: int, force: bool = False) -> None:
        with self._lock:
            self._done[layer_id] = current
            now = time.monotonic()
            last_t, last_b = self._last.get(layer_id, (0.0, -MIN_BYTES))
            if not (
                force or current >= size or now - last_t >= MIN_INTERVAL_S or current - last_b >= MIN_BYTES
            ):
                return
            self._last[layer_id] = (now, current)
            done = sum(self._done.values())
        verb = "Uploaded" if self.mode == "push" else "Downloaded"
        self.emit(
            {
                "type": "progress",
                "message": f"{verb}: {human_size(done)}",
                "total": self.total,
                "layer": {"id": layer_id, "size": size, "current": current},
                "mode": self.mode,
            }
        )


_END = object()


def iterate(run: Callable[[ProgressCallback], Any]) -> Iterator[dict[str, Any]]:
    """Run `run(callback)` in a thread and yield its events as they come; the final
    `{"type":"error"}` event is yielded (not raised) when it fails, as DMR's stream does
    after the 200 has been sent. The return value is dropped."""
    q: queue.Queue[Any] = queue.Queue(maxsize=1024)

    def worker() -> None:
        try:
            run(q.put)
        except Exception as exc:
            q.put({"type": "error", "message": f"Error: {exc}"})
        finally:
            q.put(_END)

    t = threading.Thread(target=worker, name="dmr-progress", daemon=True)
    t.start()
    while True:
        item = q.get()
        if item is _END:
            break
        yield item
    t.join()
