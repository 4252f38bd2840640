"""Ollama's request bodies (msgspec: strict types, unknown fields ignored as Ollama ignores them) and their
conversion to the one typed chat request (ChatCompletionRequest) and the OpenAI-shaped messages that dmr's
chat path renders with the model's template.

Ollama's shapes are in ../shared/docs/dialects.md ("Ollama") and Ollama's `api/types.go`: `options` is
a bag of sampling and load settings, `format` is "json" or a JSON schema, `think` a bool or an effort
level, tool-call `arguments` are JSON objects (OpenAI's are strings), and a `tool` message names its
function with `tool_name`."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from dmr.errors import InvalidRequestError
from dmr.scheduling.scheduler import parse_keep_alive
from dmr.server.protocol import ChatCompletionRequest

#: `think` levels (GPT-OSS style); a level also reaches the template as `reasoning_effort`.
THINK_LEVELS = ("low", "medium", "high")


class Options(msgspec.Struct, kw_only=True):
    """The `options` Ollama clients send. Load-time knobs other than num_ctx (num_gpu, num_thread, use_mmap,
    ...) and samplers llama.cpp dropped (tfs_z, mirostat) are typed, so that a wrong type is a 400, but
    otherwise ignored as Ollama ignores options its runner does not use."""

    num_ctx: int | None = None
    num_predict: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    num_keep: int | None = None
    tfs_z: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    penalize_newline: bool | None = None
    numa: bool | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    low_vram: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    num_thread: int | None = None


class ToolFunction(msgspec.Struct, kw_only=True):
    name: str
    arguments: dict[str, Any] | str | None = None
    index: int | None = None


class ToolCall(msgspec.Struct, kw_only=True):
    function: ToolFunction
    id: str | None = None
    type: str | None = None


class Message(msgspec.Struct, kw_only=True):
    role: str
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class _Generation(msgspec.Struct, kw_only=True):
    model: str | None = None
    stream: bool = True  # Ollama streams unless told not to
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: str | int | float | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ChatRequest(_Generation, kw_only=True):
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None
    truncate: bool | None = None
    shift: bool | None = None


class GenerateRequest(_Generation, kw_only=True):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    images: list[str] | None = None
    context: list[int] | None = None


class EmbedRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    input: str | list[str] | None = None
    truncate: bool = True
    options: Options | None = None
    keep_alive: str | int | float | None = None
    dimensions: int | None = None


class EmbeddingsRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    prompt: str | None = None
    options: Options | None = None
    keep_alive: str | int | float | None = None


def _error(param: str, message: str) -> InvalidRequestError:
    err = InvalidRequestError(message)
    err.param = param  # type: ignore[attr-defined]
    return err


def keep_alive_seconds(value: str | int | float | None) -> float | None:
    """Ollama's keep_alive (a duration string, or seconds as a number; 0 unloads, negative keeps) in
    seconds; None when the request did not say."""
    if value is None:
        return None
    return parse_keep_alive(value)


def max_tokens(options: Options | None) -> int | None:
    """num_predict -> max tokens: -1 (Ollama's default) and -2 (fill the context) mean no limit."""
    n = options.num_predict if options is not None else None
    if n is None or n in (-1, -2):
        return None
    if n < 0:
        raise _error("options.num_predict", "options.num_predict must be -1, -2 or a non-negative integer")
    return n


def num_ctx(options: Options | None) -> int | None:
    n = options.num_ctx if options is not None else None
    if n is not None and not 1 <= n < 2**31:
        raise _error("options.num_ctx", "options.num_ctx must be a positive integer")
    return n


def _response_format(fmt: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """`format`: "json" -> any JSON object; a schema -> that schema; both enforced by a grammar."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"schema": fmt}}
    raise _error("format", f'format must be "json" or a JSON schema object, not {fmt!r}')


def _think(think: bool | str | None) -> tuple[int | None, dict[str, Any] | None]:
    """`think` -> (reasoning budget, template kwargs): false turns reasoning off (budget 0), true or a
    level lets the model think without a limit; None keeps the model's configured budget."""
    if think is None:
        return None, None
    if think is False:
        return 0, None
    if think is True:
        return -1, None
    if think in THINK_LEVELS:
        return -1, {"reasoning_effort": think}
    raise _error("think", f"think must be true, false or one of {', '.join(THINK_LEVELS)}, not {think!r}")


def chat_request(req: _Generation, tools: list[dict[str, Any]] | None = None) -> ChatCompletionRequest:
    """The typed chat request an Ollama chat or generate request asks for (`options` mapped as Ollama's
    runner maps them onto llama.cpp's samplers)."""
    o = req.options or Options()
    budget, template_kwargs = _think(req.think)
    if req.top_logprobs is not None and not 0 <= req.top_logprobs <= 20:
        raise _error("top_logprobs", "top_logprobs must be between 0 and 20")
    return ChatCompletionRequest(
        model=req.model,
        stream=req.stream,
        temperature=o.temperature,
        top_k=o.top_k,
        top_p=o.top_p,
        min_p=o.min_p,
        seed=o.seed,
        stop=o.stop,
        repeat_penalty=o.repeat_penalty,
        repeat_last_n=o.repeat_last_n,
        presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty,
        response_format=_response_format(req.format),
        tools=tools,
        reasoning_budget=budget,
        chat_template_kwargs=template_kwargs,
        reasoning_effort=template_kwargs["reasoning_effort"] if template_kwargs else None,
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs if req.logprobs else None,
    )


def tools_of(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Ollama's tools are OpenAI's function tools; each needs a function name."""
    if not tools:
        return None
    for i, t in enumerate(tools):
        fn = t.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _error(
                f"tools.{i}", f"tools[{i}] needs {{'type': 'function', 'function': {{'name': ...}}}}"
            )
    return tools


def has_images(messages: list[Message]) -> bool:
    return any(m.images for m in messages)


def openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Ollama messages -> OpenAI messages: tool-call arguments as JSON text, `tool_name` as the tool
    message's name, and its call id found from the assistant call it answers when the client sent none
    (Ollama's clients usually do not)."""
    out: list[dict[str, Any]] = []
    calls_by_name: dict[str, str] = {}
    for i, m in enumerate(messages):
        msg: dict[str, Any] = {"role": m.role, "content": m.content or ""}
        if m.tool_calls:
            calls = []
            for j, c in enumerate(m.tool_calls):
                args = c.function.arguments
                text = args if isinstance(args, str) else json.dumps(args or {}, ensure_ascii=False)
                cid = c.id or f"call_{i}_{j}"
                calls_by_name[c.function.name] = cid
                calls.append(
                    {"id": cid, "type": "function", "function": {"name": c.function.name, "arguments": text}}
                )
            msg["tool_calls"] = calls
        if m.role == "tool":
            if m.tool_name:
                msg["name"] = m.tool_name
            call_id = m.tool_call_id or (calls_by_name.get(m.tool_name) if m.tool_name else None)
            if call_id is not None:
                msg["tool_call_id"] = call_id
        out.append(msg)
    return out


# --- model management ----------------------------------------------------------------------------------


class ModelRequest(msgspec.Struct, kw_only=True):
    """/api/show, /api/delete, /api/pull, /api/push (older clients name the model `name`)."""

    model: str | None = None
    name: str | None = None
    verbose: bool = False
    insecure: bool = False
    stream: bool = True


class CopyRequest(msgspec.Struct, kw_only=True):
    source: str
    destination: str


class CreateRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    name: str | None = None
    stream: bool = True
    from_: str | None = msgspec.field(default=None, name="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    license: str | list[str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    quantize: str | None = None
