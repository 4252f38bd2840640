"""Anthropic Messages requests (msgspec: strict types, unknown fields ignored as Anthropic's API does for
fields it does not know) and their conversion to the one typed chat request (ChatCompletionRequest) and
OpenAI-shaped messages that dmr's chat path renders with the model's template."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from dmr.errors import InvalidRequestError
from dmr.server.protocol import ChatCompletionRequest


class MessagesRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    max_tokens: int | None = None
    messages: list[dict[str, Any]] | None = None
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


def _error(param: str, message: str) -> InvalidRequestError:
    err = InvalidRequestError(message)
    err.param = param  # type: ignore[attr-defined]
    return err


def _text_of(blocks: Any, where: str) -> str:
    """A string, or text blocks joined (system prompts, tool results)."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise _error(where, f"{where} must be a string or a list of text blocks")
    out = []
    for i, b in enumerate(blocks):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            kind = b.get("type") if isinstance(b, dict) else type(b).__name__
            raise _error(f"{where}.{i}", f"{where}.{i}: a block of type {kind!r} is not supported here")
        out.append(b["text"])
    return "".join(out)


def _user_blocks(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """One user turn's blocks -> OpenAI messages: each tool_result becomes a `tool` message (they come
    first in Anthropic's turn), the text blocks one user message."""
    out: list[dict[str, Any]] = []
    text: list[str] = []
    for i, b in enumerate(blocks):
        kind = b.get("type") if isinstance(b, dict) else None
        at = f"{where}.content.{i}"
        if kind == "text" and isinstance(b.get("text"), str):
            text.append(b["text"])
        elif kind == "tool_result":
            call_id = b.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise _error(f"{at}.tool_use_id", f"{at}.tool_use_id is required")
            result = _text_of(b.get("content", ""), f"{at}.content")
            if b.get("is_error") is True:
                result = f"Error: {result}"
            out.append({"role": "tool", "tool_call_id": call_id, "content": result})
        elif kind in ("image", "document"):
            raise _error(at, f"{at}: this model does not accept {kind} input")
        else:
            raise _error(at, f"{at}: unsupported content block type {kind!r} in a user message")
    if text or not out:
        out.append({"role": "user", "content": "".join(text)})
    return out


def _assistant_blocks(blocks: list[Any], where: str) -> dict[str, Any]:
    """One assistant turn's blocks -> one OpenAI assistant message (text, tool_calls, reasoning_content)."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, b in enumerate(blocks):
        kind = b.get("type") if isinstance(b, dict) else None
        at = f"{where}.content.{i}"
        if kind == "text" and isinstance(b.get("text"), str):
            text.append(b["text"])
        elif kind == "thinking" and isinstance(b.get("thinking"), str):
            thinking.append(b["thinking"])
        elif kind == "redacted_thinking":
            continue  # opaque to any model but Anthropic's
        elif kind == "tool_use":
            name, call_input = b.get("name"), b.get("input", {})
            if not isinstance(name, str) or not name or not isinstance(call_input, dict):
                raise _error(at, f"{at}: tool_use needs a name and an input object")
            call_id = b.get("id") if isinstance(b.get("id"), str) else f"toolu_{i}"
            arguments = json.dumps(call_input, ensure_ascii=False)
            calls.append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            )
        else:
            raise _error(at, f"{at}: unsupported content block type {kind!r} in an assistant message")
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        msg["reasoning_content"] = "".join(thinking)
    return msg


def chat_messages(req: MessagesRequest) -> list[dict[str, Any]]:
    """The conversation as OpenAI messages, the system prompt first."""
    if not isinstance(req.messages, list) or not req.messages:
        raise _error("messages", "messages must be a non-empty list")
    out: list[dict[str, Any]] = []
    if req.system is not None:
        system = _text_of(req.system, "system")
        if system:
            out.append({"role": "system", "content": system})
    for i, m in enumerate(req.messages):
        where = f"messages.{i}"
        role = m.get("role")
        content = m.get("content")
        if role not in ("user", "assistant"):
            raise _error(f"{where}.role", f"{where}.role must be 'user' or 'assistant'")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif isinstance(content, list):
            out.extend(
                _user_blocks(content, where) if role == "user" else [_assistant_blocks(content, where)]
            )
        else:
            raise _error(f"{where}.content", f"{where}.content must be a string or a list of content blocks")
    return out


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    out = []
    for i, t in enumerate(tools):
        name = t.get("name")
        kind = t.get("type")
        if kind not in (None, "custom"):
            raise _error(f"tools.{i}.type", f"tools.{i}: server tool {kind!r} is not available here")
        if not isinstance(name, str) or not name:
            raise _error(f"tools.{i}.name", f"tools.{i}.name is required")
        schema = t.get("input_schema", {"type": "object"})
        if not isinstance(schema, dict):
            raise _error(f"tools.{i}.input_schema", f"tools.{i}.input_schema must be a JSON schema object")
        fn: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: dict[str, Any] | None) -> tuple[Any, bool]:
    """Anthropic's tool_choice -> (OpenAI's tool_choice, parallel calls allowed)."""
    if choice is None:
        return None, True
    kind = choice.get("type")
    parallel = choice.get("disable_parallel_tool_use") is not True
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise _error("tool_choice.name", "tool_choice of type 'tool' needs a name")
        return {"type": "function", "function": {"name": name}}, parallel
    raise _error("tool_choice.type", "tool_choice.type must be one of auto, any, tool, none")


def _thinking_budget(thinking: dict[str, Any] | None, max_tokens: int | None) -> int | None:
    """`thinking` -> the request's reasoning budget (None: the model's configured one)."""
    if thinking is None:
        return None
    kind = thinking.get("type")
    if kind == "disabled":
        return 0
    if kind == "adaptive":
        return -1
    if kind != "enabled":
        raise _error("thinking.type", "thinking.type must be 'enabled', 'adaptive' or 'disabled'")
    budget = thinking.get("budget_tokens")
    if type(budget) is not int or budget < 1:
        raise _error("thinking.budget_tokens", "thinking.budget_tokens must be a positive integer")
    if max_tokens is not None and budget >= max_tokens:
        raise _error("thinking.budget_tokens", "thinking.budget_tokens must be less than max_tokens")
    return budget


def chat_request(req: MessagesRequest, *, count_only: bool = False) -> ChatCompletionRequest:
    """The typed chat request a Messages request asks for (`count_only`: count_tokens, no max_tokens)."""
    if not count_only:
        if req.max_tokens is None:
            raise _error("max_tokens", "max_tokens is required")
        if req.max_tokens < 1:
            raise _error("max_tokens", "max_tokens must be at least 1")
    tool_choice, parallel = _tool_choice(req.tool_choice)
    return ChatCompletionRequest(
        model=req.model,
        stream=req.stream,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        stop=list(req.stop_sequences) if req.stop_sequences else None,
        tools=_tools(req.tools),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        reasoning_budget=_thinking_budget(req.thinking, None if count_only else req.max_tokens),
    )
