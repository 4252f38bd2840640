"""The Responses API's stored responses: what `previous_response_id`, `GET /v1/responses/{id}` and
`.../input_items` read back.

In memory, as DMR keeps them (a restart forgets them), and bounded three ways so that a client that never
deletes cannot grow the server: entries expire after a TTL (DMR's 1 h, `DMR_RESPONSES_TTL`), and the
oldest are dropped beyond `max_entries` or `max_bytes` (the size of an entry is its JSON's length,
measured once when it is stored). One store per app, kept on `app.state` (not a module global), so that
two servers in one process (the tests) never see each other's responses.

Each entry holds the chat messages of the whole conversation up to and including this response's answer
(without the instructions, which OpenAI does not carry over to the next turn): a follow-up turn is those
messages plus its new input, so the prompt it renders starts with the previous prompt and the answer as it
was generated, and the engine reuses their cached tokens."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from dmr import config

#: Responses kept at most (the oldest go first).
MAX_ENTRIES = 1000
#: Bytes of JSON kept at most over all entries (the oldest go first).
MAX_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    #: the response object as the client received it (GET returns it)
    document: dict[str, Any]
    #: this request's own input items, each with an id (GET .../input_items)
    input_items: list[dict[str, Any]]
    #: the conversation as chat messages, this response's answer last (previous_response_id)
    messages: list[dict[str, Any]]
    size: int
    expires: float


class ResponseStore:
    """Not thread-safe: used from the event loop only."""

    def __init__(
        self,
        *,
        ttl_s: float = config.RESPONSES_TTL_S,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s, self.max_entries, self.max_bytes = ttl_s, max_entries, max_bytes
        self.clock = clock
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()  # oldest first
        self.bytes = 0

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def put(
        self,
        document: dict[str, Any],
        input_items: list[dict[str, Any]],
        messages: list[dict[str, Any]],
    ) -> bool:
        """Keeps the response; False when it alone is larger than the whole store may hold (not kept)."""
        rid = document["id"]
        try:
            size = sum(len(msgspec.json.encode(x)) for x in (document, input_items, messages))
        except (TypeError, OverflowError, RecursionError):  # nothing a client sent should fail here, but
            return False  # if it did, the response is still answered, only not kept
        self.delete(rid)
        if size > self.max_bytes:
            return False
        entry = StoredResponse(rid, document, input_items, messages, size, self.clock() + self.ttl_s)
        self._entries[rid] = entry
        self.bytes += size
        self._expire()
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def get(self, rid: str) -> StoredResponse | None:
        self._expire()
        return self._entries.get(rid)

    def delete(self, rid: str) -> bool:
        if rid not in self._entries:
            return False
        self._drop(rid)
        return True

    def _drop(self, rid: str) -> None:
        self.bytes -= self._entries.pop(rid).size

    def _expire(self) -> None:
        """Entries expire in the order they were stored (one TTL for all): drop from the front."""
        now = self.clock()
        while self._entries:
            first = next(iter(self._entries.values()))
            if first.expires > now:
                break
            self._drop(first.id)


def store_of(app_state: Any) -> ResponseStore:
    """The app's store (Starlette's `app.state`), made on first use."""
    store: ResponseStore | None = getattr(app_state, "responses_store", None)
    if store is None:
        store = ResponseStore()
        app_state.responses_store = store
    return store
