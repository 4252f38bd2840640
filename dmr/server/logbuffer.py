"""The service log behind GET /logs: a logging handler that keeps recent lines in memory, appends
them to `<log dir>/inference.log` (DMR's file name) and feeds live followers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO


class LogBuffer(logging.Handler):
    def __init__(self, max_lines: int = 5000) -> None:
        super().__init__()
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._followers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]] = set()
        self._mutex = threading.Lock()
        self._file: IO[str] | None = None

    def open_file(self, directory: Path) -> None:
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True)
            self._file = (directory / "inference.log").open("a", encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        line = f"[{ts}] {record.levelname} {record.name}: {record.getMessage()}\n"
        with self._mutex:
            self._lines.append(line)
            followers = list(self._followers)
            if self._file is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._file.write(line)
                    self._file.flush()
        for loop, q in followers:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(q.put_nowait, line)

    def lines(self) -> list[str]:
        with self._mutex:
            return list(self._lines)

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue()
        with self._mutex:
            self._followers.add((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        with self._mutex:
            self._followers = {f for f in self._followers if f[1] is not q}


LOG_BUFFER = LogBuffer()
