"""End to end: the real `ollama` client (PyPI) against a real `dmr serve` and the real SmolLM2, on dmr's
port and on `--ollama-port`; pulls come from a real registry (Debian's docker-registry) that a model was
pushed to first. Nothing is mocked."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from models.registry_server import Registry, running_registry

from dmr.models.package import package
from dmr.models.push import push
from dmr.models.store import Store

from .conftest import MODEL
from .helpers import CREATED, Server, free_port, make_store, running_server

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0, "num_predict": 8}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
def oc(server: Server) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url, timeout=180) as c:
        yield c


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("ollama-registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def remote_model(registry: Registry, tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> str:
    """SmolLM2 packaged with another creation time (a model the server's store does not have), pushed to
    the test registry; returns its reference there."""
    st = Store(tmp_path_factory.mktemp("ollama-source"))
    ref = f"{registry.host}/ai/smollm2-remote:latest"
    package(st, gguf=smollm2_path, created=CREATED + 1, tags=[ref])
    push(ref, st)
    return ref


def test_list_and_show(oc: ollama.Client) -> None:
    listed = oc.list()
    (entry,) = [m for m in listed.models if m.model == MODEL]
    assert entry.details is not None and entry.details.family == "llama" and entry.details.format == "gguf"
    assert entry.size and entry.size > 50_000_000 and entry.digest and len(entry.digest) == 64
    shown = oc.show("smollm2")  # Ollama's short name resolves as ai/smollm2:latest
    assert shown.capabilities == ["completion"]
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["tokenizer.ggml.tokens"] is None  # a large array: only with verbose
    assert shown.template and "im_start" in shown.template
    assert shown.details is not None and shown.details.quantization_level == "Q4_1"


def test_show_verbose_includes_the_large_arrays(server: Server) -> None:
    with server.client() as c:
        doc = c.post("/api/show", json={"model": MODEL, "verbose": True}).json()
    tokens = doc["model_info"]["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list) and len(tokens) == 49152 and "<|im_start|>" in tokens


def test_chat_streamed_and_not_give_the_same_greedy_answer(oc: ollama.Client, server: Server) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    whole = oc.chat(model=MODEL, messages=messages, options=GREEDY)
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.done and whole.done_reason == "length" and whole.eval_count == 8
    assert whole.prompt_eval_count and whole.prompt_eval_count > 5
    assert whole.total_duration and whole.eval_duration and whole.prompt_eval_duration
    assert whole.total_duration > whole.eval_duration
    parts = list(oc.chat(model="ai/smollm2", messages=messages, options=GREEDY, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done and parts[-1].done_reason == "length"
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].eval_count == 8
    with server.client() as c:
        recs = [r for g in c.get("/engines/requests").json() for r in g["records"] if r["url"] == "/api/chat"]
    assert recs and all(r["dialect"] == "ollama" for r in recs)


def test_generate_templated_and_raw(oc: ollama.Client) -> None:
    out = oc.generate(model=MODEL, prompt="Why is the sky blue?", options=GREEDY)
    assert out.response and out.done_reason == "length" and out.eval_count == 8
    parts = list(oc.generate(model=MODEL, prompt="Why is the sky blue?", options=GREEDY, stream=True))
    assert "".join(p.response or "" for p in parts) == out.response
    raw = oc.generate(model=MODEL, prompt="The capital of France is", raw=True, options=GREEDY)
    assert raw.response and raw.context and len(raw.context) > 8
    more = oc.generate(model=MODEL, prompt=" and", raw=True, context=raw.context, options=GREEDY)
    assert more.response and more.prompt_eval_count == len(raw.context) + 1


def test_format_schema_gives_json_that_matches(oc: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    messages = [{"role": "user", "content": "Invent a person with a name and an age."}]
    options = {"temperature": 0, "num_predict": 60}
    out = oc.chat(model=MODEL, messages=messages, format=schema, options=options)
    doc = json.loads(out.message.content or "")
    assert isinstance(doc["name"], str) and isinstance(doc["age"], int)


def test_tool_call_is_a_whole_object_with_dict_arguments(oc: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Call the get_weather tool with city Paris."}]
    options = {"temperature": 0, "num_predict": 60}
    out = oc.chat(model=MODEL, messages=messages, tools=TOOLS, options=options)
    assert out.message.tool_calls, out.message
    (call,) = out.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
    parts = list(oc.chat(model=MODEL, messages=messages, tools=TOOLS, options=options, stream=True))
    with_calls = [p for p in parts if p.message.tool_calls]
    assert len(with_calls) == 1  # one chunk, the whole call: never fragments
    assert with_calls[0].message.tool_calls[0].function.arguments == {"city": "Paris"}  # type: ignore[index]
    # the round trip: the call (arguments as an object) and the tool's answer go back in
    history = [
        *messages,
        {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
        {"role": "tool", "content": "sunny, 21 degrees", "tool_name": "get_weather"},
    ]
    answer = oc.chat(model=MODEL, messages=history, tools=TOOLS, options=options)
    assert answer.done and (answer.message.content or answer.message.tool_calls)


def test_embed_and_legacy_embeddings(oc: ollama.Client) -> None:
    out = oc.embed(model=MODEL, input=["hello", "world"])
    assert len(out.embeddings) == 2 and len(out.embeddings[0]) == 576
    assert math.isclose(sum(x * x for x in out.embeddings[0]), 1.0, rel_tol=1e-3)
    assert out.prompt_eval_count and out.prompt_eval_count >= 2
    legacy = oc.embeddings(model=MODEL, prompt="hello")
    assert len(legacy.embedding) == 576


def test_load_ps_and_unload(oc: ollama.Client) -> None:
    loaded = oc.chat(model=MODEL, messages=[])
    assert loaded.done_reason == "load"
    (running,) = [m for m in oc.ps().models if m.model == MODEL]
    assert running.context_length == 2048 and running.size and running.expires_at is not None
    unloaded = oc.generate(model=MODEL, prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert not [m for m in oc.ps().models if m.model == MODEL]


def test_unknown_model_is_a_404_in_ollamas_shape(oc: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as exc:
        oc.chat(model="ai/no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 404 and exc.value.error == "model 'ai/no-such-model' not found"


def test_pull_with_progress_then_chat_copy_and_delete(oc: ollama.Client, remote_model: str) -> None:
    statuses = list(oc.pull(remote_model, insecure=True, stream=True))
    names = [s.status for s in statuses]
    assert names[0] == "pulling manifest"
    assert names[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = [s for s in statuses if s.digest]
    assert layers and all(s.total and s.completed is not None and s.completed <= s.total for s in layers)
    assert all(s.status == f"pulling {(s.digest or '').removeprefix('sha256:')[:12]}" for s in layers)
    assert {s.digest for s in layers if s.completed == s.total} == {s.digest for s in layers}
    assert remote_model in {m.model for m in oc.list().models}
    reply = oc.chat(model=remote_model, messages=[{"role": "user", "content": "Hi"}], options=GREEDY)
    assert reply.message.content
    again = oc.pull(remote_model)  # not streamed: the last status
    assert again.status == "success"
    assert oc.copy(remote_model, "ai/smollm2-copy:v1").status == "success"
    assert "ai/smollm2-copy:v1" in {m.model for m in oc.list().models}
    assert oc.delete("ai/smollm2-copy:v1").status == "success"
    assert oc.delete(remote_model).status == "success"
    names_left = {m.model for m in oc.list().models}
    assert remote_model not in names_left and "ai/smollm2-copy:v1" not in names_left and MODEL in names_left
    with pytest.raises(ollama.ResponseError) as exc:
        oc.delete(remote_model)
    assert exc.value.status_code == 404


def test_push_reports_progress(oc: ollama.Client, registry: Registry) -> None:
    ref = f"{registry.host}/ai/smollm2-pushed:latest"
    assert oc.copy(MODEL, ref).status == "success"
    try:
        statuses = list(oc.push(ref, insecure=True, stream=True))
    finally:
        oc.delete(ref)
    names = [s.status for s in statuses]
    assert names[0] == "retrieving manifest" and names[-2:] == ["pushing manifest", "success"]
    layers = [s for s in statuses if s.digest]
    assert layers and all((s.status or "").startswith("pushing ") and s.total for s in layers)
    with httpx.Client(timeout=10) as c:  # the registry has it now
        r = c.get(
            f"http://{registry.host}/v2/ai/smollm2-pushed/manifests/latest",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    assert r.status_code == 200


def test_create_from_an_uploaded_blob_and_from_a_model(oc: ollama.Client, tmp_path: Path) -> None:
    from .fake_server import write_tiny_gguf

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", ctx=1024)
    digest = oc.create_blob(gguf)  # HEAD-less upload, digest verified by the server
    created = list(oc.create(model="ai/tiny-created", files={"tiny.gguf": digest}, stream=True))
    assert created[0].status == "parsing GGUF" and created[-1].status == "success"
    try:
        shown = oc.show("ai/tiny-created")
        assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 1024
    finally:
        oc.delete("ai/tiny-created")
    template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n"
    )
    assert oc.create(model="ai/smollm2-custom", from_=MODEL, template=template).status == "success"
    try:
        assert oc.show("ai/smollm2-custom").template == template
        out = oc.chat(model="ai/smollm2-custom", messages=[{"role": "user", "content": "Hi"}], options=GREEDY)
        assert out.message.content
    finally:
        oc.delete("ai/smollm2-custom")


def test_pull_of_a_missing_model_raises(oc: ollama.Client, registry: Registry) -> None:
    with pytest.raises(ollama.ResponseError):
        list(oc.pull(f"{registry.host}/ai/not-there:latest", stream=True))


def test_ollama_port_serves_a_client_with_its_default_host(
    tmp_path: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(tmp_path / "store", {MODEL: smollm2_path})
    port = free_port()
    with running_server(tmp_path / "srv", tmp_path / "store", args=["--ollama-port", str(port)]) as srv:
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "Ollama is running"
        assert httpx.get(srv.url + "/", timeout=10).text.startswith("Docker Model Runner")
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")  # what a client with its default host reads
        with ollama.Client(timeout=180) as c:
            assert MODEL in {m.model for m in c.list().models}
            out = c.chat(model="smollm2", messages=[{"role": "user", "content": "Hi"}], options=GREEDY)
            assert out.message.content and out.done_reason == "length"
