"""Tool calls parsed out of the model's text as it streams, so clients get them token by token.

OpenAI streams a tool call as a header delta (`index`, `id`, `type`, `function.name`, `arguments: ""`)
followed by `function.arguments` fragments that concatenate to the arguments' JSON text. llama-server
does the same by re-parsing the whole partial output after every token and diffing; here one
incremental JSON scanner (`JsonScanner`) reads each character once and reports where values start and
end by path, so per-token work stays a few characters long.

Two output shapes are read (see `dmr.engine.chat` for how the prompt asks for them):
- generic (grammar-constrained JSON): `{"tool_call": {"name": ..., "arguments": {...}}}`,
  `{"tool_calls": [{...}, ...]}` or `{"response": "text"}`, whose string streams as content;
- native (Hermes / Qwen): content text with `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
  blocks in it.

The arguments are streamed as the model wrote them (raw JSON text), as OpenAI's API does; a string-valued
`arguments` (JSON encoded by the model) is streamed decoded. The same parser serves non-streaming
responses (`parse_tool_output`), so both shapes of a response always agree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from dmr.engine.chat import partial_suffix

TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"

Path = tuple[str | int, ...]
#: ("start", path, offset) | ("chars", path, decoded text) | ("end", path, (end offset, string value or None))
Event = tuple[str, Path, Any]

_WS = " \t\r\n"
_SCALAR = set("-+.0123456789eEtruefalsn")
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


class JsonScanner:
    """Reads one JSON value incrementally and reports value starts, string characters and value ends.

    Offsets count the characters consumed since the scanner was made. Lenient where the model cannot
    hurt anything (scalars are not validated); `failed` is set at the first character that cannot
    continue a JSON value, and `done` once the top-level value is complete. Neither character is consumed.
    """

    __slots__ = (
        "_esc",
        "_expect",
        "_high",
        "_in_scalar",
        "_in_string",
        "_is_key",
        "_stack",
        "_str",
        "done",
        "failed",
        "pos",
    )

    def __init__(self) -> None:
        self.pos = 0
        self.done = False
        self.failed = False
        self._stack: list[list[Any]] = []  # frames: [is_object, current key or index]
        # what may come next: "value" | "value_or_close" | "key" | "key_or_close" | "colon" | "comma_or_close"
        self._expect = "value"
        self._in_string = False
        self._is_key = False
        self._esc = ""  # an escape sequence being read
        self._high = ""  # a UTF-16 high surrogate waiting for its low half
        self._str: list[str] = []
        self._in_scalar = False

    def path(self) -> Path:
        return tuple(frame[1] for frame in self._stack)

    def feed(self, text: str) -> tuple[list[Event], int]:
        """Consumes `text` up to the end of the value; returns the events and the characters consumed."""
        events: list[Event] = []
        for i, ch in enumerate(text):
            if self.done or not self._step(ch, events):
                return events, i
            self.pos += 1
        return events, len(text)

    def _step(self, ch: str, events: list[Event]) -> bool:
        """Takes one character; False when it is not part of the value (the value ended, or bad JSON)."""
        if self._in_string:
            self._string_char(ch, events)
            return not self.failed
        if self._in_scalar:
            if ch in _SCALAR:
                return True
            self._in_scalar = False
            self._value_done(None, events, end=self.pos)
            if self.done:
                return False
        if ch in _WS:
            return True
        expect = self._expect
        if expect == "value" or expect == "value_or_close":
            if expect == "value_or_close" and ch == "]":
                self._close(events)
            else:
                self._value_start(ch, events)
        elif expect == "key" or expect == "key_or_close":
            if expect == "key_or_close" and ch == "}":
                self._close(events)
            elif ch == '"':
                self._in_string, self._is_key, self._str = True, True, []
            else:
                self.failed = True
        elif expect == "colon":
            self.failed = ch != ":"
            self._expect = "value"
        else:  # comma_or_close
            frame = self._stack[-1]
            if ch == ",":
                if not frame[0]:
                    frame[1] += 1
                self._expect = "key" if frame[0] else "value"
            elif ch == ("}" if frame[0] else "]"):
                self._close(events)
            else:
                self.failed = True
        return not self.failed

    def _value_start(self, ch: str, events: list[Event]) -> None:
        if ch == "{":
            events.append(("start", self.path(), self.pos))
            self._stack.append([True, ""])
            self._expect = "key_or_close"
        elif ch == "[":
            events.append(("start", self.path(), self.pos))
            self._stack.append([False, 0])
            self._expect = "value_or_close"
        elif ch == '"':
            events.append(("start", self.path(), self.pos))
            self._in_string, self._is_key, self._str = True, False, []
        elif ch in _SCALAR:
            events.append(("start", self.path(), self.pos))
            self._in_scalar = True
        else:
            self.failed = True

    def _close(self, events: list[Event]) -> None:
        self._stack.pop()
        self._value_done(None, events, end=self.pos + 1)

    def _value_done(self, value: str | None, events: list[Event], end: int) -> None:
        events.append(("end", self.path(), (end, value)))
        if self._stack:
            self._expect = "comma_or_close"
        else:
            self.done = True

    def _string_char(self, ch: str, events: list[Event]) -> None:
        if self._esc:
            self._esc += ch
            if self._esc[1] != "u":
                out = _SIMPLE_ESCAPES.get(ch, ch)
                self._esc = ""
            elif len(self._esc) < 6:
                return
            else:
                try:
                    code = int(self._esc[2:], 16)
                except ValueError:
                    self.failed = True
                    return
                self._esc = ""
                if 0xD800 <= code < 0xDC00:
                    self._high = chr(code)
                    return
                if 0xDC00 <= code < 0xE000 and self._high:
                    out = (self._high + chr(code)).encode("utf-16", "surrogatepass").decode("utf-16")
                    self._high = ""
                else:
                    out = chr(code)
        elif ch == "\\":
            self._esc = ch
            return
        elif ch == '"':
            self._in_string = False
            text = "".join(self._str)
            if self._is_key:
                self._stack[-1][1] = text
                self._expect = "colon"
            else:
                self._value_done(text, events, end=self.pos + 1)
            return
        else:
            out = ch
        if self._high:  # a high surrogate with no low half: keep the text encodable
            out, self._high = "\ufffd" + out, ""
        self._str.append(out)
        if not self._is_key:
            events.append(("chars", self.path(), out))


@dataclass
class _Call:
    index: int = -1  # set when its header is sent
    id: str = field(default_factory=new_call_id)
    name: str | None = None
    sent_header: bool = False
    args_start: int = -1
    args_end: int = -1
    args_emitted: int = -1
    args_is_string: bool = False
    args: list[str] = field(default_factory=list)  # everything emitted so far
    pending: list[str] = field(default_factory=list)  # decoded string arguments held until the header

    def arguments(self) -> str:
        return "".join(self.args) or "{}"


#: A delta is ("content", text) or ("tool_calls", [OpenAI tool-call delta, ...]).
Delta = tuple[str, Any]


class ToolCallStream:
    """Feeds the model's (content) text; returns content and tool-call deltas in OpenAI's stream shape."""

    def __init__(self, kind: str) -> None:
        if kind not in ("generic", "native"):
            raise ValueError(f"no tool-call parser for mode {kind!r}")
        self.kind = kind
        self.calls: list[_Call] = []  # calls whose header was sent, in order
        self.content: list[str] = []  # content deltas sent
        self._scanner: JsonScanner | None = JsonScanner() if kind == "generic" else None
        self._raw = ""  # the text the current scanner's offsets index
        self._open: dict[Path, _Call] = {}  # calls being read, by the path of their object
        self._recognised = False  # generic: a response string or a tool call was seen
        self._held = ""  # native: a partial tag at the end of the text so far
        self._closing = False  # native: a call's JSON ended, "</tool_call>" may follow
        self._trailing_ws = ""  # native: trailing whitespace of the content, sent only if more follows

    def feed(self, text: str) -> list[Delta]:
        out: list[Delta] = []
        if self.kind == "generic":
            self._raw += text  # all of it: unparsable output falls back to content as written
            self._scan(text, out)
        else:
            self._feed_native(self._held + text, out)
        return _merge(out)

    def finish(self) -> list[Delta]:
        out: list[Delta] = []
        if self.kind == "generic":
            if not self._recognised:  # not the JSON the grammar asks for (or cut short): plain content
                self._content(self._raw, out)
        elif self._scanner is not None:  # the output ended inside a <tool_call> block
            if not self._open_call_started():
                self._content(TOOL_OPEN + self._raw, out)
        elif not self._closing:
            self._content(self._held, out)
        self._scanner, self._held = None, ""
        if self._trailing_ws and not self.calls:  # a plain answer keeps its text exactly
            self.content.append(self._trailing_ws)
            out.append(("content", self._trailing_ws))
        self._trailing_ws = ""
        for call in self.calls:
            if not call.args:
                self._args(call, "{}", out)
        return _merge(out)

    def tool_calls(self) -> list[dict[str, Any]]:
        return [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments()}}
            for c in self.calls
        ]

    # --- native: content with <tool_call> blocks ------------------------------------------------------

    def _feed_native(self, text: str, out: list[Delta]) -> None:
        self._held = ""
        while text:
            if self._scanner is not None:
                text = self._scan(text, out)
                if self._scanner is not None:  # the block goes on in the next piece
                    return
            elif self._closing:
                stripped = text.lstrip()
                if TOOL_CLOSE.startswith(stripped):  # all of it may still become the closing tag
                    self._held = text
                    return
                self._closing = False
                text = stripped[len(TOOL_CLOSE) :] if stripped.startswith(TOOL_CLOSE) else stripped
            else:
                idx = text.find(TOOL_OPEN)
                if idx < 0:
                    keep = partial_suffix(text, TOOL_OPEN)
                    self._content(text[: len(text) - keep], out)
                    self._held = text[len(text) - keep :]
                    return
                self._content(text[:idx], out)
                text = text[idx + len(TOOL_OPEN) :]
                self._scanner, self._raw, self._open = JsonScanner(), "", {}

    def _open_call_started(self) -> bool:
        return any(c.sent_header for c in self._open.values())

    # --- the JSON scanner's events, and what their paths mean ----------------------------------------

    def _scan(self, text: str, out: list[Delta]) -> str:
        """Feeds the current scanner; returns what it did not consume (native: the text after a call)."""
        scanner = self._scanner
        assert scanner is not None
        events, used = scanner.feed(text)
        if self.kind == "native":
            self._raw += text[:used]
        for kind, path, payload in events:
            self._event(kind, path, payload, out)
        for call in self._open.values():  # arguments still being written: send what has arrived
            if call.sent_header and call.args_start >= 0 and call.args_end < 0 and not call.args_is_string:
                self._args(call, self._raw[call.args_emitted : scanner.pos], out)
                call.args_emitted = scanner.pos
        rest = text[used:]
        if self.kind == "native" and (scanner.done or scanner.failed):
            if scanner.failed and not self._open_call_started():
                self._content(TOOL_OPEN + self._raw, out)  # not a tool call after all: it was content
            self._scanner, self._open = None, {}
            self._closing = scanner.done
        return rest

    def _event(self, kind: str, path: Path, payload: Any, out: list[Delta]) -> None:
        if self.kind == "generic" and path == ("response",):
            self._recognised = True
            if kind == "chars":
                self._content(payload, out)
            return
        call, key = self._field(path)
        if call is None:
            return
        if key == "name" and kind == "end" and isinstance(payload[1], str) and not call.sent_header:
            call.name = payload[1]
            self._header(call, out)
        elif key == "arguments":
            if kind == "start":
                call.args_start = call.args_emitted = payload
                call.args_is_string = self._raw[payload] == '"'
            elif kind == "chars":
                if call.sent_header:
                    self._args(call, payload, out)
                else:
                    call.pending.append(payload)
            elif kind == "end":
                end = payload[0]
                if call.sent_header and not call.args_is_string:
                    self._args(call, self._raw[call.args_emitted : end], out)
                call.args_end = call.args_emitted = end

    def _field(self, path: Path) -> tuple[_Call | None, str | int | None]:
        """(the call whose field `path` is, the field's name) in this mode's output shape."""
        if self.kind == "native":
            prefix: Path = ()
        elif path[:1] == ("tool_call",):
            prefix = path[:1]
        elif path[:1] == ("tool_calls",) and len(path) >= 2 and isinstance(path[1], int):
            prefix = path[:2]
        else:
            return None, None
        if len(path) != len(prefix) + 1:  # the call object itself, or deep inside its arguments
            return None, None
        call = self._open.get(prefix)
        if call is None:
            call = self._open[prefix] = _Call()
        return call, path[-1]

    def _header(self, call: _Call, out: list[Delta]) -> None:
        self._recognised = True
        call.sent_header = True
        call.index = len(self.calls)
        self.calls.append(call)
        function = {"name": call.name, "arguments": ""}
        header = {"index": call.index, "id": call.id, "type": "function", "function": function}
        out.append(("tool_calls", [header]))
        # arguments written before the name (a sibling, so already complete): send them now
        if call.args_is_string:
            self._args(call, "".join(call.pending), out)
        elif call.args_end >= 0:
            self._args(call, self._raw[call.args_start : call.args_end], out)
        call.pending = []

    def _args(self, call: _Call, text: str, out: list[Delta]) -> None:
        if text:
            call.args.append(text)
            out.append(("tool_calls", [{"index": call.index, "function": {"arguments": text}}]))

    def _content(self, text: str, out: list[Delta]) -> None:
        if self.kind == "native":
            # Whitespace around <tool_call> blocks (the newline before, between and after them) is not
            # content: it is held until more text follows, and dropped at the end when the answer made calls.
            text = self._trailing_ws + text
            body = text.rstrip()
            self._trailing_ws = text[len(body) :]
            text = body
        if text:
            self.content.append(text)
            out.append(("content", text))


def _merge(deltas: list[Delta]) -> list[Delta]:
    """Adjacent content deltas, and adjacent argument fragments of one call, become one delta each."""
    merged: list[Delta] = []
    for kind, value in deltas:
        if merged and merged[-1][0] == kind:
            prev = merged[-1][1]
            if kind == "content":
                merged[-1] = (kind, prev + value)
                continue
            last, new = prev[-1], value[0]
            if "id" not in last and "id" not in new and last["index"] == new["index"]:
                joined = last["function"]["arguments"] + new["function"]["arguments"]
                prev[-1] = {"index": last["index"], "function": {"arguments": joined}}
                continue
        merged.append((kind, value))
    return merged


@dataclass
class ParsedOutput:
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def parse_tool_output(text: str, kind: str) -> ParsedOutput:
    """Whole assistant text -> content and OpenAI tool_calls: the streaming parser, fed at once."""
    stream = ToolCallStream(kind)
    stream.feed(text)
    stream.finish()
    calls = stream.tool_calls()
    content = "".join(stream.content)
    return ParsedOutput(content or None, calls) if calls else ParsedOutput(content)
