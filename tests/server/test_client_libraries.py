"""Client libraries from PyPI, run their documented basic flows against a real `dmr serve` with the real
model (issue #18): LangChain (chat, stream, embeddings), instructor (structured output through JSON schema
and through tools), the OpenAI Agents SDK (an agent run over chat completions)."""

from __future__ import annotations

import asyncio

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
