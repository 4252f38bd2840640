"""The response object and its output items, built from what the typed chat events added up to.

The request's settings that the response echoes (instructions, tools, tool_choice, text ...) are fixed
when the request is read: `ResponseHead` holds them with the id, so that the streamed events
(`response.created` ... `response.completed`) and the non-streaming document are one shape."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from dmr.chat.events import FinishReason, Transcript
from dmr.engine.protocol import Usage
from dmr.server.errors import error_payload
from dmr.server.responses.wire import ResponsesRequest, new_id, text_echo

Status = Literal["in_progress", "completed", "incomplete", "failed"]


@dataclass
class ResponseHead:
    """One response's id, creation time, model and the request settings it echoes."""

    model: str
    echo: dict[str, Any]
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def of(cls, req: ResponsesRequest, tools: list[dict[str, Any]]) -> ResponseHead:
        reasoning = req.reasoning
        echo = {
            "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens,
            "metadata": dict(req.metadata or {}),
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": req.previous_response_id,
            "reasoning": {
                "effort": reasoning.effort if reasoning else None,
                "summary": reasoning.summary if reasoning else None,
            },
            "store": req.store is not False,
            "temperature": req.temperature,
            "text": text_echo(req.text),
            "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
            "tools": tools,
            "top_p": req.top_p,
            "truncation": req.truncation or "disabled",
            "user": req.user,
        }
        return cls(req.model or "", echo)

    def document(
        self,
        status: Status,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        *,
        error: dict[str, Any] | None = None,
        incomplete_reason: str | None = None,
    ) -> dict[str, Any]:
        done = status in ("completed", "incomplete", "failed")
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if done else None,
            "error": error,
            "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
            "model": self.model,
            "output": output,
            **self.echo,
            "usage": usage,
        }


def final_status(reason: FinishReason | None) -> tuple[Status, str | None]:
    """The response's status for the generation's finish reason, and the incomplete reason."""
    if reason in ("length", "abort"):
        return "incomplete", "max_output_tokens" if reason == "length" else "interrupted"
    return "completed", None


def error_object(exc: BaseException) -> dict[str, Any]:
    """A failed response's `error` (the SDK's ResponseError: a code from its list and a message)."""
    _, body = error_payload(exc)
    return {"code": "server_error", "message": body["error"]["message"]}


def usage_json(u: Usage | None, reasoning_tokens: int = 0) -> dict[str, Any] | None:
    """`reasoning_tokens`: the reasoning pieces the events carried (one per token but where a tag split
    one), at most the tokens generated."""
    if u is None:
        return None
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": min(reasoning_tokens, u.completion_tokens)},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }


# --- output items ---------------------------------------------------------------------------------------


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """`text` None: the item as first announced, before any content part."""
    content = [] if text is None else [text_part(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """The reasoning as a local model writes it: all of it, as `content` (no summary is made)."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": content}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output_items(t: Transcript) -> list[dict[str, Any]]:
    """A finished transcript's output: its reasoning, its message (also when empty, unless the answer is
    only tool calls), then its function calls, in the order a stream announces them."""
    status = "incomplete" if t.finish_reason == "length" else "completed"
    out: list[dict[str, Any]] = []
    if t.reasoning:
        out.append(reasoning_item(new_id("rs"), "".join(t.reasoning), status))
    if t.content or not t.tool_calls:
        out.append(message_item(new_id("msg"), t.text, status))
    for call in t.tool_calls:
        out.append(function_call_item(new_id("fc"), call.id, call.name, call.arguments, "completed"))
    return out


def response_document(head: ResponseHead, t: Transcript) -> dict[str, Any]:
    status, reason = final_status(t.finish_reason)
    usage = usage_json(t.usage, len(t.reasoning))
    return head.document(status, output_items(t), usage, incomplete_reason=reason)
