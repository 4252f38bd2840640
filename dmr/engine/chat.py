"""Messages -> prompt with the model's own Jinja chat template; tool prompting; reasoning splitting.

Rendering follows Hugging Face's `apply_chat_template` (and llama.cpp's minja port of it): a sandboxed,
immutable Jinja2 environment with `trim_blocks`/`lstrip_blocks`, the loop-controls extension, the
`raise_exception` and `strftime_now` globals, and a `tojson` filter that keeps non-ASCII text. The
template comes from the artifact's template layer when there is one, else from the GGUF.

Tools. A template that mentions `tools` renders them itself and the model answers in its own format,
the Hermes/Qwen `<tool_call>{json}</tool_call>` form that `dmr.engine.tool_stream` parses. A template
that does not (SmolLM2's ChatML, Gemma 3) gets llama.cpp's "generic" treatment (common/chat.cpp,
common_chat_params_init_generic): a system note describing the tools, and a JSON grammar that makes
the model answer `{"tool_call": {"name", "arguments"}}` or `{"response": "..."}`; earlier tool calls
and tool results are rewritten into that JSON (minja's tool-call / tool-response polyfills). The grammar
is what makes a 135M model call tools reliably.

Reasoning. Text between `<think>` and `</think>` becomes `reasoning_content` (llama-server's
`--reasoning-format deepseek`); when the rendered prompt already opens `<think>` the output starts
inside it. `ReasoningSplitter` does this incrementally for streams, holding back a partial tag.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dmr.errors import InvalidRequestError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

#: A ChatML fallback for models that ship no template (llama.cpp's default is chatml too).
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: What a model that ships no template gets: ChatML (llama.cpp's choice too), and its end-of-turn markers as
#: stop strings: a base model's vocabulary has no end-of-generation token for them, and it went on writing
#: turns of its own until max_tokens. Measured on Gemma 3 270M base: ChatML with these stops ends a greedy
#: answer after 17 tokens; Gemma's own <start_of_turn> format made it repeat the question until the limit.
FALLBACK_STOPS = ("<|im_end|>", "<|im_start|>")


def fallback_template(bos: str, eos: str) -> ChatTemplate:
    return ChatTemplate(CHATML, bos, eos, stop=FALLBACK_STOPS)


class TemplateError(InvalidRequestError):
    """The chat template refused the messages (raise_exception) or failed to render them."""


def _raise(message: str) -> None:
    raise TemplateError(f"chat template error: {message}")


def _tojson(
    value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False
) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


#: A template renders at most this many characters (one that printed 1 GB took the host's memory) ...
MAX_RENDER_CHARS = 32 << 20
#: ... in at most this long (one with a huge loop never finished, blocking what waited for it).
RENDER_DEADLINE_S = 10.0
#: The largest string or list a template may make with `*`, and the largest exponent of `**`.
MAX_REPEAT_ITEMS = 1 << 20
MAX_EXPONENT = 1024


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with `*` and `**` checked: `"x" * 10**9` or `10 ** 10 ** 9` is one operation, which no
    deadline between template lines can interrupt."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise TemplateError(f"chat template error: exponent {right} is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                if sized and len(seq) * times > MAX_REPEAT_ITEMS:
                    raise TemplateError("chat template error: a repetition makes a value too large")
        return super().call_binop(context, operator, left, right)


class _Deadline:
    """A trace function for the rendering thread that counts lines of template code (jinja compiles a
    template to Python whose file is `<template>`) and stops the render once the deadline has passed.
    Other frames are not traced while a template renders. They are not handed to the tracer that was there
    before either: coverage's C tracer re-installs itself when called that way, and then the deadline is
    never checked. The previous tracer is put back afterwards (ChatTemplate.render)."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.lines = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        return self.local if frame.f_code.co_filename == "<template>" else None

    def local(self, frame: Any, event: str, arg: Any) -> Any:
        self.lines += 1
        if self.lines & 1023 == 0 and time.monotonic() > self.deadline:
            raise TemplateError(f"the chat template did not finish rendering within {RENDER_DEADLINE_S:g} s")
        return self.local


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    return _environment().from_string(source)


@dataclass
class ChatTemplate:
    """A model's template plus the special-token strings it refers to."""

    source: str
    bos_token: str = ""
    eos_token: str = ""
    #: stop strings every answer gets (a fallback's end-of-turn marker); empty for the model's own template
    stop: tuple[str, ...] = ()

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.source

    @property
    def hermes_tool_calls(self) -> bool:
        """The template asks for Hermes/Qwen `<tool_call>{json}</tool_call>` blocks (Qwen 2.5/3, Hermes)."""
        return self.supports_tools and "<tool_call>" in self.source

    @property
    def supports_tool_role(self) -> bool:
        return "tool" in self.source

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> str:
        try:
            template = _compile(self.source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"the model's chat template does not parse: {exc}") from exc
        previous = sys.gettrace()
        sys.settrace(_Deadline(RENDER_DEADLINE_S))
        try:
            out: list[str] = []
            size = 0
            for piece in template.generate(
                messages=messages,
                tools=tools or None,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **(extra or {}),
            ):
                size += len(piece)
                if size > MAX_RENDER_CHARS:
                    raise TemplateError(f"the chat template renders more than {MAX_RENDER_CHARS} characters")
                out.append(piece)
            return "".join(out)
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise TemplateError(f"chat template error: {exc}") from exc
        except (MemoryError, RecursionError, OverflowError) as exc:
            raise TemplateError(f"chat template error: {type(exc).__name__}") from exc
        finally:
            sys.settrace(previous)


# --- message normalisation ------------------------------------------------------------------------------


def content_text(content: Any) -> str:
    """OpenAI content (string, null or a list of parts) -> text; non-text parts are refused."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif (
                isinstance(part, dict)
                and part.get("type") in ("text", "input_text")
                and isinstance(part.get("text"), str)
            ):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequestError(f"content part of type {kind!r} is not supported by this model")
        return "".join(parts)
    raise InvalidRequestError("message content must be a string, null or a list of content parts")


@dataclass
class ToolMode:
    """How tools are presented and parsed for one request."""

    kind: str  # "none" | "native" | "generic"
    schema: dict[str, Any] | None = None  # generic: the JSON schema the output must match
    # native Hermes templates: the schema of one call inside <tool_call> ... </tool_call>, and whether the
    # grammar waits for the model to open a call (tool_choice auto) or makes it call (required / named)
    call_schema: dict[str, Any] | None = None
    lazy: bool = False
    parallel: bool = True  # more than one <tool_call> block allowed


def tool_mode(
    template: ChatTemplate, tools: list[dict[str, Any]] | None, tool_choice: Any, *, parallel: bool = True
) -> ToolMode:
    """parallel: several calls may be made in one answer (OpenAI's parallel_tool_calls, default true)."""
    if not (tool_choice in (None, "none", "auto", "required") or isinstance(tool_choice, dict)):
        raise InvalidRequestError(
            "tool_choice must be 'none', 'auto', 'required' or "
            f"{{'type': 'function', 'function': {{'name': ...}}}}, not {tool_choice!r}"
        )
    if not tools and tool_choice not in (None, "none", "auto"):
        raise InvalidRequestError("tool_choice requires a call, but the request has no tools")
    if not tools or tool_choice == "none":
        return ToolMode("none")
    functions = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequestError("each tool needs {'type': 'function', 'function': {'name': ...}}")
        functions.append(fn)
    forced: str | None = None
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        forced = fn.get("name") if isinstance(fn, dict) else None
        if forced not in {f["name"] for f in functions}:
            raise InvalidRequestError(f"tool_choice names unknown function {forced!r}")
    auto = tool_choice in (None, "auto")
    if template.supports_tools and auto and not template.hermes_tool_calls:
        return ToolMode("native")  # a native format we do not constrain: parsed as it comes
    calls = []
    for fn in functions:
        if forced is not None and fn["name"] != forced:
            continue
        params = fn.get("parameters")
        calls.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": fn["name"]},
                    "arguments": params if isinstance(params, dict) and params else {"type": "object"},
                },
                "required": ["name", "arguments"],
            }
        )
    call_schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    if template.hermes_tool_calls:
        # The model sees the tools in its own format; a grammar keeps each call it opens valid JSON for one
        # of them (llama.cpp's Hermes handler: lazy on "<tool_call>" for auto, from the start otherwise).
        return ToolMode("native", call_schema=call_schema, lazy=auto, parallel=parallel)
    tool_call = {"type": "object", "properties": {"tool_call": call_schema}, "required": ["tool_call"]}
    if tool_choice == "required" or forced is not None:
        return ToolMode("generic", tool_call)
    response = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}
    return ToolMode("generic", {"anyOf": [tool_call, response]})


def generic_tool_note(tools: list[dict[str, Any]]) -> str:
    described = [t["function"] for t in tools]
    return (
        "You can call these tools:\n" + json.dumps(described, ensure_ascii=False) + "\n\n"
        "Respond in JSON format, either with `tool_call` (a request to call tools) or with `response` "
        "reply to the user's request."
    )


def prepare_messages(
    messages: list[dict[str, Any]], template: ChatTemplate, mode: ToolMode, tools: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Wire messages -> template messages: text content, tool polyfills, the generic tool note."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        msg: dict[str, Any] = {"role": role, "content": content_text(m.get("content"))}
        calls = m.get("tool_calls")
        if role == "assistant" and calls:
            if mode.kind == "native" or (template.supports_tools and mode.kind == "none"):
                msg["tool_calls"] = [_template_call(c) for c in calls]
            else:
                body = [
                    {"name": c["function"]["name"], "arguments": _args(c), "id": c.get("id")} for c in calls
                ]
                msg["content"] = json.dumps(
                    {"tool_call": body[0]} if len(body) == 1 else {"tool_calls": body}, ensure_ascii=False
                )
        elif role == "tool" and not template.supports_tool_role:
            msg = {
                "role": "user",
                "content": json.dumps(
                    {"tool_response": {"tool_call_id": m.get("tool_call_id"), "content": msg["content"]}},
                    ensure_ascii=False,
                ),
            }
        elif role == "tool":
            msg["tool_call_id"] = m.get("tool_call_id")
        if m.get("name") is not None:
            msg["name"] = m.get("name")
        out.append(msg)
    if mode.kind == "generic" and tools:
        note = generic_tool_note(tools)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + note}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out


def _args(call: dict[str, Any]) -> Any:
    raw = call.get("function", {}).get("arguments")
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": fn.get("name"), "arguments": _args(call)},
    }


# --- reasoning ---------------------------------------------------------------------------------------


def starts_in_reasoning(prompt: str) -> bool:
    """The template opened a think block for the model (DeepSeek-R1, Qwen3 thinking)."""
    tail = prompt.rstrip()
    return tail.endswith(THINK_OPEN)


class ReasoningSplitter:
    """Routes streamed text to ("reasoning", text) or ("content", text), holding back partial tags."""

    __slots__ = ("_buf", "_in_think", "_seen_any")

    def __init__(self, in_think: bool = False) -> None:
        self._in_think = in_think
        self._buf = ""
        self._seen_any = False

    def feed(self, text: str) -> list[tuple[str, str]]:
        if not self._in_think and not self._buf and THINK_OPEN[0] not in text and self._seen_any:
            return [("content", text)] if text else []  # the fast path: plain content
        self._buf += text
        out: list[tuple[str, str]] = []
        while self._buf:
            tag = THINK_CLOSE if self._in_think else THINK_OPEN
            idx = self._buf.find(tag)
            if idx >= 0:
                before = self._buf[:idx]
                if before and (self._in_think or before.strip() or self._seen_any):
                    out.append(("reasoning" if self._in_think else "content", before))
                    self._seen_any = True
                self._buf = self._buf[idx + len(tag) :]
                if self._in_think:
                    self._buf = self._buf.lstrip("\n")
                self._in_think = not self._in_think
                continue
            keep = partial_suffix(self._buf, tag)
            emit, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
            if emit:
                out.append(("reasoning" if self._in_think else "content", emit))
                self._seen_any = True
            break
        return out

    def flush(self) -> list[tuple[str, str]]:
        rest, self._buf = self._buf, ""
        return [("reasoning" if self._in_think else "content", rest)] if rest else []


def partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def split_reasoning(text: str, in_think: bool = False) -> tuple[str | None, str]:
    """Whole-text version of ReasoningSplitter: (reasoning or None, content)."""
    splitter = ReasoningSplitter(in_think)
    parts = splitter.feed(text) + splitter.flush()
    reasoning = "".join(t for k, t in parts if k == "reasoning")
    content = "".join(t for k, t in parts if k == "content")
    return (reasoning or None), content


def render_prompt(
    template: ChatTemplate,
    messages: Sequence[dict[str, Any]],
    mode: ToolMode,
    tools: list[dict[str, Any]] | None,
    extra: dict[str, Any] | None = None,
) -> str:
    prepared = prepare_messages(list(messages), template, mode, tools)
    return template.render(prepared, tools=tools if mode.kind == "native" else None, extra=extra)
