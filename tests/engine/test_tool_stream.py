"""The incremental tool-call parser: any split of the model's text gives the same calls and content."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dmr.engine.tool_stream import JsonScanner, ToolCallStream, parse_tool_output

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
dumps_style = st.fixed_dictionaries({"ensure_ascii": st.booleans(), "indent": st.sampled_from([None, 0, 2])})


def stream_in_pieces(kind: str, text: str, cuts: list[int]) -> tuple[list[Any], ToolCallStream]:
    stream = ToolCallStream(kind)
    deltas: list[Any] = []
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    for a, b in itertools.pairwise(bounds):
        deltas += stream.feed(text[a:b])
    deltas += stream.finish()
    return deltas, stream


def assemble(deltas: list[Any]) -> tuple[str, dict[int, dict[str, str]]]:
    """What an OpenAI client builds from the deltas (the SDK's accumulation rule)."""
    content, calls = "", {}
    for kind, value in deltas:
        if kind == "content":
            content += value
            continue
        for d in value:
            call = calls.setdefault(d["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += d.get("id", "")
            call["name"] += d["function"].get("name") or ""
            call["arguments"] += d["function"].get("arguments", "")
    return content, calls


@settings(max_examples=300, deadline=None)
@given(
    calls=st.lists(st.tuples(names, arguments), min_size=1, max_size=3),
    style=dumps_style,
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
    name_first=st.booleans(),
)
def test_generic_calls_survive_any_split(
    calls: list[tuple[str, dict[str, Any]]], style: dict[str, Any], cuts: list[int], name_first: bool
) -> None:
    objs = [{"name": n, "arguments": a} if name_first else {"arguments": a, "name": n} for n, a in calls]
    doc = {"tool_call": objs[0]} if len(objs) == 1 else {"tool_calls": objs}
    text = json.dumps(doc, **style)
    deltas, stream = stream_in_pieces("generic", text, cuts)
    content, got = assemble(deltas)
    assert content == ""
    assert [(got[i]["name"], json.loads(got[i]["arguments"])) for i in range(len(got))] == calls
    # the whole-text parser and the stream's own summary agree with what the client assembled
    whole = parse_tool_output(text, "generic")
    assert [
        (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in whole.tool_calls
    ] == calls
    assert [c["id"] for c in stream.tool_calls()] == [got[i]["id"] for i in range(len(got))]
    # a header (with the id and name) comes before any of that call's argument text
    seen: set[int] = set()
    for kind, value in deltas:
        for d in value if kind == "tool_calls" else []:
            assert ("id" in d) == (d["index"] not in seen)
            seen.add(d["index"])


@settings(max_examples=200, deadline=None)
@given(
    reply=st.text(max_size=60), ensure_ascii=st.booleans(), cuts=st.lists(st.integers(0, 10_000), max_size=20)
)
def test_generic_response_streams_as_content(reply: str, ensure_ascii: bool, cuts: list[int]) -> None:
    text = json.dumps({"response": reply}, ensure_ascii=ensure_ascii)
    deltas, stream = stream_in_pieces("generic", text, cuts)
    assert assemble(deltas) == (reply, {})
    assert not stream.calls


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(alphabet="ab <>/_\n", max_size=12),
    after=st.text(alphabet="ab <>/_\n", max_size=12),
    name=names,
    args=arguments,
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_native_blocks_survive_any_split(
    before: str, after: str, name: str, args: dict[str, Any], cuts: list[int]
) -> None:
    call = json.dumps({"name": name, "arguments": args})
    text = f"{before}<tool_call>\n{call}\n</tool_call>{after}"
    deltas, _ = stream_in_pieces("native", text, cuts)
    content, got = assemble(deltas)
    assert content == (before + after).rstrip()  # whitespace after the last text is no content
    assert [(got[0]["name"], json.loads(got[0]["arguments"]))] == [(name, args)]


def test_arguments_stream_token_by_token() -> None:
    stream = ToolCallStream("generic")
    text = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}'
    per_piece = [stream.feed(text[i : i + 3]) for i in range(0, len(text), 3)]
    fragments = [d for piece in per_piece for k, v in piece if k == "tool_calls" for d in v if "id" not in d]
    assert len(fragments) > 5  # the arguments arrive as they are written, not at the end
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"city": "Paris", "unit": "celsius"}'


def test_output_that_is_not_the_expected_shape_is_content() -> None:
    assert parse_tool_output('{"response": "cut sh', "generic").content == "cut sh"
    assert parse_tool_output("no json here", "generic").content == "no json here"
    assert parse_tool_output('{"other": 1}', "generic").content == '{"other": 1}'
    bad = "a <tool_call>{broken</tool_call> b"
    parsed = parse_tool_output(bad, "native")
    assert parsed.content == bad and not parsed.tool_calls
    cut = parse_tool_output('x <tool_call>{"name": "f", "argu', "native")
    assert cut.content == "x" and cut.tool_calls[0]["function"]["name"] == "f"
    assert cut.tool_calls[0]["function"]["arguments"] == "{}"
    # whitespace around calls is no content; a plain answer keeps its text exactly
    block = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    two = parse_tool_output(f"\n{block}\n{block}\n", "native")
    assert two.content is None and len(two.tool_calls) == 2
    assert parse_tool_output("Hello\n\n", "native").content == "Hello\n\n"


def test_string_arguments_are_decoded() -> None:
    parsed = parse_tool_output(
        '{"tool_call": {"name": "f", "arguments": "{\\"a\\": \\"\\u00e9\\"}"}}', "generic"
    )
    assert json.loads(parsed.tool_calls[0]["function"]["arguments"]) == {"a": "é"}


def test_scanner_reports_values_by_path() -> None:
    scanner = JsonScanner()
    events, used = scanner.feed('{"a": [1, {"b": "x\\ud83d\\ude00"}], "c": true} trailing')
    assert scanner.done and used == len('{"a": [1, {"b": "x\\ud83d\\ude00"}], "c": true}')
    ends = {path: value for kind, path, (end, value) in (e for e in events if e[0] == "end")}
    assert ends[("a", 1, "b")] == "x😀"
    assert set(ends) == {("a", 0), ("a", 1, "b"), ("a", 1), ("a",), ("c",), ()}
    bad = JsonScanner()
    bad.feed("{x")
    assert bad.failed
