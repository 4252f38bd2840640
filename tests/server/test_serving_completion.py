"""Fast tier: /completions over the in-process app and the scripted FakeEngine (fake_server.py)."""

from __future__ import annotations

import pytest

from .fake_server import MODEL, FakeServer

pytestmark = pytest.mark.fast

COMPLETIONS = "/engines/v1/completions"


async def test_text_completion_with_echo_and_usage(fake: FakeServer) -> None:
    fake.script.replies = [" world"]
    r = await fake.client.post(COMPLETIONS, json={"model": MODEL, "prompt": "Hello", "echo": True})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["object"] == "text_completion"
    assert doc["choices"] == [{"index": 0, "text": "Hello world", "finish_reason": "stop", "logprobs": None}]
    assert doc["usage"]["prompt_tokens"] == len("Hello") + 1  # BOS + bytes
    assert doc["usage"]["completion_tokens"] == len(" world")


async def test_several_prompts_give_one_choice_each_and_summed_usage(fake: FakeServer) -> None:
    fake.script.replies = ["ab", "cde"]
    r = await fake.client.post(COMPLETIONS, json={"model": MODEL, "prompt": ["x", "yy"]})
    doc = r.json()
    assert [c["text"] for c in doc["choices"]] == ["ab", "cde"]
    assert doc["usage"]["completion_tokens"] == 5
    assert doc["usage"]["prompt_tokens"] == 2 + 3


async def test_stream_bytes_and_usage_chunk(fake: FakeServer) -> None:
    fake.script.replies = ["ok"]
    body = {
        "model": MODEL,
        "prompt": "Hi",
        "stream": True,
        "echo": True,
        "stream_options": {"include_usage": True},
    }
    r = await fake.raw("POST", COMPLETIONS, body)
    events = r.sse_events()
    cid, created = events[0]["id"], events[0]["created"]
    head = (
        f'data: {{"id":"{cid}","object":"text_completion","created":{created},"model":"{MODEL}",'
        '"system_fingerprint":"dmr","choices":[{"index":0,"text":'
    )
    tail = ',"logprobs":null,"finish_reason":null}]}\n\n'
    assert r.body.decode().startswith(head + '"Hi"' + tail + head + '"o"' + tail + head + '"k"' + tail)
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 2
    assert events[-1] == "[DONE]"


async def test_token_prompt_and_max_tokens(fake: FakeServer) -> None:
    r = await fake.client.post(COMPLETIONS, json={"model": MODEL, "prompt": [72, 105], "max_tokens": 2})
    doc = r.json()
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["choices"][0]["text"] == "He"
    r = await fake.client.post(COMPLETIONS, json={"model": MODEL, "prompt": [999999]})
    assert r.status_code == 400 and "token ids" in r.json()["error"]["message"]


async def test_mid_stream_failure_is_an_error_event_and_non_stream_an_http_error(fake: FakeServer) -> None:
    fake.script.fail_after = 1
    r = await fake.raw("POST", COMPLETIONS, {"model": MODEL, "prompt": "Hi", "stream": True})
    events = r.sse_events()
    assert events[0]["choices"][0]["text"] == "H"
    assert "failed mid-stream" in events[-1]["error"]["message"]
    r2 = await fake.client.post(COMPLETIONS, json={"model": MODEL, "prompt": "Hi"})
    assert r2.status_code == 500  # EngineError: the engine failed, not the request
    assert "failed mid-stream" in r2.json()["error"]["message"]
    assert sum(x.in_use for x in fake.loader.runners.values()) == 0


async def test_disconnect_mid_stream_aborts(fake: FakeServer) -> None:
    fake.script.replies = ["y" * 300]
    fake.script.delay_s = 0.005
    r = await fake.raw(
        "POST", COMPLETIONS, {"model": MODEL, "prompt": "Hi", "stream": True}, disconnect_after=2
    )
    assert len(r.chunks) == 2
    assert fake.engine.aborts == 1 and fake.engine.active == 0
