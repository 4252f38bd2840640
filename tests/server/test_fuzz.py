"""Property-based fuzzing of the OpenAI routes: whatever arrives, the answer is never a 5xx and the
server stays up."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import MODEL
from .helpers import Server
from .strategies import json_values as json_values_of

# The hypothesis plugin imports mypy_extensions while reporting a failure; never let that hide the failure.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict:DeprecationWarning")

json_values = json_values_of(text=20, size=4, keys=10, leaves=12)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool", "x"]),
            "content": st.one_of(st.text(max_size=30), json_values),
        }
    ),
    max_size=3,
)
chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "smollm2", "ai/none", "", 5])},
    optional={
        "messages": messages | json_values,
        "max_tokens": st.integers(-5, 3) | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "stream": st.booleans() | json_values,
        "stop": json_values,
        "top_k": st.integers(-3, 100),
        "seed": st.integers(-(2**65), 2**65),
        "logit_bias": json_values,
        "response_format": st.sampled_from([{"type": "json_object"}, {"type": "x"}]) | json_values,
        "tools": json_values,
        "n": st.integers(0, 3),
        "unknown_field": json_values,
    },
)
other_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "ai/none"])},
    optional={
        "input": json_values | st.lists(st.integers(-3, 60000), max_size=4),
        "prompt": json_values,
        "max_tokens": st.integers(0, 3),
        "encoding_format": st.sampled_from(["float", "base64", "x"]),
        "query": json_values,
        "documents": json_values,
    },
)


def _ok(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert "error" in r.json()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=chat_bodies)
def test_fuzz_chat(server: Server, body: dict[str, object]) -> None:
    if isinstance(body.get("max_tokens"), int):
        body["max_tokens"] = max(0, min(3, body["max_tokens"]))  # type: ignore[call-overload]
    else:
        body["max_tokens"] = 2
    with server.client(timeout=60) as c:
        _ok(c.post("/engines/v1/chat/completions", json=body))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=other_bodies,
    path=st.sampled_from(["/v1/completions", "/v1/embeddings", "/rerank"]),
    raw=st.binary(max_size=40),
)
def test_fuzz_other_routes(server: Server, body: dict[str, object], path: str, raw: bytes) -> None:
    body.setdefault("max_tokens", 2)
    with server.client(timeout=60) as c:
        _ok(c.post(path, json=body))
        r = c.post(path, content=raw)
        assert r.status_code < 500


def test_server_survived_fuzzing(server: Server) -> None:
    assert server.alive()
