"""The Responses API's request on the wire (msgspec: strict types, unknown fields ignored as OpenAI does),
checked and converted to what the one typed chat path takes: chat messages, chat-style function tools,
tool_choice, response_format and the reasoning budget.

Input items are kept as plain dicts and checked here by hand rather than as a msgspec tagged union: clients
send messages without a `type` (the SDKs' "easy" input message), and a hand check can name the item and
field that is wrong (`input[2].content[0].type`) in the 400. Each checked item is normalised to the shape
`GET .../input_items` returns (an id, a status, content as parts), and the conversion to chat messages
reads that normalised shape only."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from dmr.errors import InvalidRequestError


def new_id(prefix: str) -> str:
    """OpenAI's id shape (`resp_`, `msg_`, `fc_` ... then hex), not dmr's `chatcmpl-` one."""
    return f"{prefix}_{secrets.token_hex(24)}"


class TextFormat(msgspec.Struct, kw_only=True):
    type: str = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class TextConfig(msgspec.Struct, kw_only=True):
    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningConfig(msgspec.Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    input: str | list[Any] | None = None
    instructions: str | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    store: bool | None = None  # null: the default, true
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    truncation: str | None = None
    include: list[str] | None = None
    user: str | None = None
    # what dmr does not do: refused by name (a 400 that says so), never silently ignored
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None


def field_error(param: str, message: str) -> InvalidRequestError:
    """A 400 naming the request field (OpenAI's `param`)."""
    err = InvalidRequestError(message)
    err.param = param  # type: ignore[attr-defined]
    return err


#: reasoning.effort values OpenAI takes; "none" and "minimal" turn the model's reasoning off.
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
TRUNCATIONS = ("auto", "disabled")
MAX_METADATA = 16


def check_request(req: ResponsesRequest) -> None:
    """What the field types alone do not say: refused features, value sets, bounds."""
    if req.background:
        raise field_error("background", "background responses are not supported")
    if req.conversation is not None:
        raise field_error("conversation", "conversations are not supported; use previous_response_id")
    if req.prompt is not None:
        raise field_error("prompt", "prompt templates are not supported; send instructions and input")
    if req.truncation is not None and req.truncation not in TRUNCATIONS:
        raise field_error("truncation", f"truncation must be one of {', '.join(TRUNCATIONS)}")
    if req.reasoning is not None and req.reasoning.effort is not None and req.reasoning.effort not in EFFORTS:
        raise field_error("reasoning.effort", f"reasoning.effort must be one of {', '.join(EFFORTS)}")
    if req.max_output_tokens is not None and not 0 <= req.max_output_tokens <= 1 << 30:
        raise field_error("max_output_tokens", "max_output_tokens must be between 0 and 1073741824")
    if req.metadata is not None:
        if len(req.metadata) > MAX_METADATA:
            raise field_error("metadata", f"metadata holds at most {MAX_METADATA} pairs")
        if any(len(k) > 64 or len(v) > 512 for k, v in req.metadata.items()):
            raise field_error("metadata", "metadata keys are at most 64 characters, values at most 512")
    if req.previous_response_id is not None and not req.previous_response_id:
        raise field_error("previous_response_id", "previous_response_id must not be empty")


def reasoning_budget(req: ResponsesRequest) -> int | None:
    """effort none/minimal: no reasoning (budget 0); any other: the model's configured budget."""
    effort = req.reasoning.effort if req.reasoning is not None else None
    return 0 if effort in ("none", "minimal") else None


# --- input items -------------------------------------------------------------------------------------

ROLES = ("user", "system", "developer", "assistant")
#: content part types whose `text` is the message's text
TEXT_PARTS = ("input_text", "output_text", "text", "refusal")
#: content part types OpenAI takes that the text models dmr serves cannot
MEDIA_PARTS = ("input_image", "input_file", "input_audio")


def input_items(value: str | list[Any] | None) -> list[dict[str, Any]]:
    """The request's `input` as normalised items (each with an id and a status)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [_message("user", [value], None)]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise field_error(where, f"{where} must be an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            out.append(_message_item(item, where))
        elif kind == "function_call":
            out.append(_function_call_item(item, where))
        elif kind == "function_call_output":
            out.append(_function_output_item(item, where))
        elif kind == "reasoning":
            out.append(_reasoning_item(item, where))
        elif isinstance(kind, str):
            raise field_error(f"{where}.type", f"input item type {kind!r} is not supported")
        else:
            raise field_error(f"{where}.type", f"{where} needs a type (or a role, for a message)")
    return out


def _item_id(item: dict[str, Any], prefix: str) -> str:
    given = item.get("id")
    return given if isinstance(given, str) and given else new_id(prefix)


def _string(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise field_error(f"{where}.{name}", f"{where}.{name} must be a string")
    return value


def _message(role: str, texts: list[str], given_id: str | None) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    parts: list[dict[str, Any]] = []
    for text in texts:
        part: dict[str, Any] = {"type": kind, "text": text}
        if kind == "output_text":
            part["annotations"] = []
        parts.append(part)
    return {
        "id": given_id or new_id("msg"),
        "type": "message",
        "role": role,
        "status": "completed",
        "content": parts,
    }


def _message_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise field_error(f"{where}.role", f"{where}.role must be one of {', '.join(ROLES)}")
    content = item.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in TEXT_PARTS:
                texts.append(_string(part, "refusal" if kind == "refusal" else "text", at))
            elif kind in MEDIA_PARTS:
                raise field_error(f"{at}.type", f"{kind} content is not supported by this model")
            else:
                raise field_error(f"{at}.type", f"{at} must be a text part (input_text or output_text)")
    else:
        raise field_error(f"{where}.content", f"{where}.content must be a string or a list of parts")
    given = item.get("id")
    return _message(str(role), texts, given if isinstance(given, str) and given else None)


def _function_call_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        "id": _item_id(item, "fc"),
        "type": "function_call",
        "call_id": _string(item, "call_id", where),
        "name": _string(item, "name", where),
        "arguments": _string(item, "arguments", where),
        "status": "completed",
    }


def _function_output_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    output = item.get("output")
    if isinstance(output, list):  # the newer form: a list of input_text parts
        texts = []
        for j, part in enumerate(output):
            if not (isinstance(part, dict) and part.get("type") in TEXT_PARTS):
                raise field_error(f"{where}.output[{j}]", f"{where}.output[{j}] must be a text part")
            texts.append(_string(part, "text", f"{where}.output[{j}]"))
        output = "".join(texts)
    if not isinstance(output, str):
        raise field_error(f"{where}.output", f"{where}.output must be a string or a list of text parts")
    return {
        "id": _item_id(item, "fco"),
        "type": "function_call_output",
        "call_id": _string(item, "call_id", where),
        "output": output,
        "status": "completed",
    }


def _reasoning_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": _item_id(item, "rs"), "type": "reasoning", "summary": []}
    for name in ("summary", "content"):
        parts = item.get(name)
        if parts is None:
            continue
        if not isinstance(parts, list) or not all(
            isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts
        ):
            raise field_error(f"{where}.{name}", f"{where}.{name} must be a list of text parts")
        out[name] = [{"type": p.get("type"), "text": p["text"]} for p in parts]
    return out


def chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Normalised items -> chat messages. Function calls join the assistant message before them (one
    assistant turn, as the model wrote it); outputs become tool messages; reasoning items are dropped (the
    templates do not show a past turn's reasoning)."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            out.append({"role": item["role"], "content": "".join(p["text"] for p in item["content"])})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                if not last["content"] and "tool_calls" not in last:
                    last["content"] = None
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return out


# --- tools, tool_choice, text.format -------------------------------------------------------------------


def function_tools(tools: list[Any] | None) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """(the chat request's tools, the response's `tools` echo). Only function tools: the built-in ones
    (web_search, file_search, computer use ...) run on OpenAI's servers."""
    if tools is None:
        return None, []
    chat: list[dict[str, Any]] = []
    echo: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise field_error(where, f"{where} must be an object")
        kind = tool.get("type")
        if kind != "function":
            raise field_error(
                f"{where}.type", f"tool type {kind!r} is not supported; only function tools are"
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise field_error(f"{where}.name", f"{where}.name must be a non-empty string")
        description, parameters, strict = tool.get("description"), tool.get("parameters"), tool.get("strict")
        if description is not None and not isinstance(description, str):
            raise field_error(f"{where}.description", f"{where}.description must be a string")
        if parameters is not None and not isinstance(parameters, dict):
            raise field_error(f"{where}.parameters", f"{where}.parameters must be a JSON schema object")
        if strict is not None and not isinstance(strict, bool):
            raise field_error(f"{where}.strict", f"{where}.strict must be a boolean")
        fn: dict[str, Any] = {"name": name}
        if description is not None:
            fn["description"] = description
        if parameters is not None:
            fn["parameters"] = parameters
        chat.append({"type": "function", "function": fn})
        echo.append(
            {
                "type": "function",
                "name": name,
                "description": description,
                "parameters": parameters,
                "strict": True if strict is None else strict,
            }
        )
    return (chat or None), echo


def chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """auto / none / required, or {type: function, name}: the chat form of each."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if name is None and isinstance(choice.get("function"), dict):  # the chat form, sent here anyway
            name = choice["function"].get("name")
        if isinstance(name, str) and name:
            return {"type": "function", "function": {"name": name}}
    raise field_error(
        "tool_choice", "tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}"
    )


def response_format(text: TextConfig | None) -> dict[str, Any] | None:
    """text.format -> the chat request's response_format (json_schema: the grammar follows `schema`)."""
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.type == "json_schema":
        if fmt.schema is None:
            raise field_error("text.format.schema", "text.format.schema is required for json_schema")
        return {"type": "json_schema", "json_schema": {"name": fmt.name or "response", "schema": fmt.schema}}
    raise field_error("text.format.type", "text.format.type must be text, json_object or json_schema")


def text_echo(text: TextConfig | None) -> dict[str, Any]:
    """The response's `text` field: the format as asked (text when not)."""
    fmt = text.format if text is not None else None
    doc: dict[str, Any] = {"type": fmt.type if fmt is not None else "text"}
    if fmt is not None and fmt.type == "json_schema":
        doc.update(
            name=fmt.name or "response", schema=fmt.schema, strict=fmt.strict, description=fmt.description
        )
    out: dict[str, Any] = {"format": doc}
    if text is not None and text.verbosity is not None:
        out["verbosity"] = text.verbosity
    return out
