"""One real server for the module's end-to-end tests, over a store holding the real SmolLM2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from dmr.models.package import package

from .helpers import CREATED, Server, make_store, running_server

MODEL = "ai/smollm2:latest"
RERANKER = "ai/test-reranker:latest"
#: SmolLM2 packaged with a chat-template layer that renders tools the Hermes way (<tool_call> blocks)
HERMES = "ai/smollm2-hermes:latest"
HERMES_TEMPLATE = Path(__file__).parent / "data" / "hermes-tools.jinja"
#: SmolLM2 packaged with a template that opens a think block: a "reasoning model" (the thinking budget)
THINKER = "ai/smollm2-thinker:latest"
THINKER_TEMPLATE = Path(__file__).parent / "data" / "think-open.jinja"


@pytest.fixture(scope="session")
def smollm2_store(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, reranker_path: Path) -> Path:
    root = tmp_path_factory.mktemp("store")
    store = make_store(root, {MODEL: smollm2_path, RERANKER: reranker_path})
    package(store, gguf=smollm2_path, chat_template=HERMES_TEMPLATE, created=CREATED, tags=[HERMES])
    package(store, gguf=smollm2_path, chat_template=THINKER_TEMPLATE, created=CREATED, tags=[THINKER])
    return root


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, smollm2_store: Path) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("server"), smollm2_store, env={"DMR_CONTEXT_SIZE": "2048"}
    ) as srv:
        yield srv


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.v1, api_key="dummy", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture
async def aclient(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.v1, api_key="dummy", max_retries=0, timeout=120)
