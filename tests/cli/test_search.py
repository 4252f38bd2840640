"""`dmr search` against local fakes of Docker Hub's repository API and Hugging Face's model API (no hub is
reachable from the tests): what is asked for, paging, filtering, the table and the JSON (issue #18, 4)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from dmr.cli.search import search

pytestmark = pytest.mark.fast


def _repo(name: str, pulls: int, description: str = "", private: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "ai",
        "description": description,
        "pull_count": pulls,
        "star_count": 3,
        "is_private": private,
        "last_updated": "2026-11-01T00:00:00Z",
    }


class FakeHubs:
    """Docker Hub's /v2/repositories/ai/ (two pages) and Hugging Face's /api/models on one port."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.status = 200
        hubs = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                hubs.requests.append((url.path, query))
                if hubs.status != 200:
                    self.send_response(hubs.status)
                    self.end_headers()
                    return
                if url.path == "/v2/repositories/ai/":
                    if query.get("page") == ["2"]:
                        body: Any = {
                            "next": None,
                            "results": [_repo("qwen3", 500, "Qwen3 GGUF for llama.cpp")],
                        }
                    else:
                        body = {
                            "next": f"http://127.0.0.1:{hubs.port}/v2/repositories/ai/?page=2",
                            "results": [
                                _repo("smollm2", 9000, "Tiny chat model"),
                                _repo("secret", 1, private=True),
                                _repo("gpt-oss", 800, "safetensors for vLLM and GGUF"),
                            ],
                        }
                elif url.path == "/api/models":
                    body = [
                        {"modelId": "bartowski/SmolLM2-GGUF", "downloads": 1234, "likes": 7,
                         "tags": ["gguf", "llama", "chat"], "pipeline_tag": "text-generation"},
                        {"id": "org/private", "private": True, "tags": []},
                        {"id": "org/st-model", "downloads": 5, "likes": 0, "tags": ["safetensors"]},
                    ]  # fmt: skip
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def hubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHubs]:
    fake = FakeHubs()
    monkeypatch.setenv("DMR_DOCKER_HUB_URL", fake.url)
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_search_both_sources_as_a_table(hubs: FakeHubs) -> None:
    r = CliRunner().invoke(search, [])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "BACKEND", "DOWNLOADS", "STARS", "SOURCE"]
    assert any("ai/smollm2" in line and "9,000" in line and "Docker Hub" in line for line in lines)
    assert any("ai/qwen3" in line for line in lines)  # the second page was followed
    assert not any("secret" in line or "org/private" in line for line in lines)  # private ones are left out
    assert any("hf.co/bartowski/SmolLM2-GGUF" in line and "HuggingFace" in line for line in lines)
    hub_query = next(q for path, q in hubs.requests if path == "/v2/repositories/ai/")
    assert hub_query["ordering"] == ["-pull_count"]
    hf_query = next(q for path, q in hubs.requests if path == "/api/models")
    assert hf_query["apps"] == ["vllm,llama.cpp"] and hf_query["sort"] == ["downloads"]


def test_search_term_source_limit_and_json(hubs: FakeHubs) -> None:
    r = CliRunner().invoke(search, ["GGUF", "--source", "dockerhub", "--json"])
    assert r.exit_code == 0, r.output
    found = json.loads(r.output)
    assert [m["name"] for m in found] == ["ai/gpt-oss", "ai/qwen3"]  # name or description matches
    assert found[0]["backend"] == "llama.cpp, vllm" and found[0]["official"] is True
    assert not any(path == "/api/models" for path, _ in hubs.requests)
    r = CliRunner().invoke(search, ["smol", "--source", "huggingface", "-n", "1", "--json"])
    assert r.exit_code == 0, r.output
    (only,) = json.loads(r.output)
    assert only["name"] == "hf.co/bartowski/SmolLM2-GGUF" and only["backend"] == "llama.cpp"
    hf_query = [q for path, q in hubs.requests if path == "/api/models"][-1]
    assert hf_query["search"] == ["smol"] and hf_query["limit"] == ["1"]


def test_a_failing_hub_is_a_clear_error(hubs: FakeHubs) -> None:
    hubs.status = 429
    r = CliRunner().invoke(search, ["x"])
    assert r.exit_code == 1 and "rate limited by Docker Hub" in r.output
