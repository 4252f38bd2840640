"""End to end: the Responses API through the real `openai` SDK and `openai-agents` (its default Responses
model) against a real `dmr serve` with the real SmolLM2 (135M: greedy, and tool calls made required where
a call must happen). No mocks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import openai
import pytest

from .conftest import HERMES, MODEL
from .helpers import Server

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
GREEDY: Any = {"temperature": 0, "max_output_tokens": 48}


def test_create_and_stream_agree(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Say hi to Bob.", **GREEDY)
    assert response.id.startswith("resp_") and response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.usage is not None and response.usage.output_tokens > 0
    deltas, names = [], []
    with client.responses.stream(
        model=MODEL, input="Say hi to Bob.", temperature=0, max_output_tokens=200
    ) as s:
        for event in s:
            names.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = s.get_final_response()
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert len(deltas) > 1 and "".join(deltas) == final.output_text
    assert final.output_text.startswith(response.output_text)  # greedy: the same answer, maybe longer


def test_previous_response_id_chains_and_reuses_the_cached_prefix(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=MODEL, input="My name is Ada. Please remember my name.", instructions="Be brief.", **GREEDY
    )
    second = client.responses.create(
        model=MODEL,
        input="What is my name?",
        instructions="Be brief.",
        previous_response_id=first.id,
        **GREEDY,
    )
    assert first.usage is not None and second.usage is not None
    assert second.previous_response_id == first.id
    # the second prompt holds the first prompt and its answer, whose tokens the engine kept
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    third = client.responses.create(model=MODEL, input="Thanks.", previous_response_id=second.id, **GREEDY)
    assert third.usage is not None and third.usage.input_tokens > second.usage.input_tokens


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=MODEL,
        input="John is 31 years old. Give his name and age as JSON.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
        temperature=0,
        max_output_tokens=64,
    )
    assert response.status == "completed"
    jsonschema.validate(json.loads(response.output_text), schema)


def test_function_call_then_its_output(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=MODEL, input="What is the weather in Paris?", tools=[WEATHER], tool_choice="required", **GREEDY
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_") and call.id.startswith("fc_")
    assert isinstance(json.loads(call.arguments)["city"], str)
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 25 C"}],
        tools=[WEATHER],
        tool_choice="none",
        **GREEDY,
    )
    assert second.status in ("completed", "incomplete") and second.output_text.strip()
    assert second.usage is not None and second.usage.input_tokens_details.cached_tokens > 0


def test_a_streamed_function_call_has_argument_deltas(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input="Weather in Rome?", tools=[WEATHER], tool_choice="required", **GREEDY
    ) as s:
        deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
        final = s.get_final_response()
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert deltas and json.loads("".join(deltas)) == json.loads(call.arguments)


def test_retrieve_input_items_count_and_delete(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Hi there", max_output_tokens=8)
    got = client.responses.retrieve(response.id)
    assert got.id == response.id and got.output_text == response.output_text
    items = client.responses.input_items.list(response.id)
    assert [item.type for item in items.data] == ["message"]
    counted = client.responses.input_tokens.count(model=MODEL, input="Hi there")
    assert counted.input_tokens == response.usage.input_tokens  # type: ignore[union-attr]
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=MODEL, input="x", previous_response_id=response.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input="x", tools=[{"type": "web_search"}])


def test_openai_agents_runs_a_tool_agent_over_responses(server: Server) -> None:
    """The Agents SDK's default model (OpenAIResponsesModel) with one function tool, run to its final
    output. SmolLM2 with the Hermes tool template (HERMES): with its plain template and the generic JSON
    tool format, the 135M model calls the tool again on every turn instead of answering."""
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # the SDK would send traces to OpenAI otherwise
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        asked.append(city)
        return f"It is sunny and 25 C in {city}."

    async def run() -> Any:
        async with openai.AsyncOpenAI(base_url=server.v1, api_key="dmr", max_retries=0) as client:
            model = OpenAIResponsesModel(model=HERMES, openai_client=client)
            settings = ModelSettings(
                tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=256
            )
            agent = Agent(
                name="weather",
                instructions="Answer questions about the weather with the get_weather tool.",
                model=model,
                tools=[get_weather],
                # greedy; the first turn must call the tool (the SDK resets tool_choice after a call)
                model_settings=settings,
            )
            return await Runner.run(agent, "What is the weather in Paris?", max_turns=4)

    result = asyncio.run(run())
    assert asked and "Paris" in asked[0]  # the tool really ran, with what the model asked for
    assert any(item.type == "tool_call_output_item" for item in result.new_items)
    assert len(result.raw_responses) >= 2  # the call, then the answer after its output
    assert isinstance(result.final_output, str) and result.final_output.strip()
