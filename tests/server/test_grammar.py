"""Fast tier: JSON schema -> GBNF (dmr/server/grammar.py). Each grammar is checked by matching documents
with a small GBNF matcher (gbnf.py): what the schema allows is accepted, what it forbids is refused."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dmr.errors import InvalidRequestError
from dmr.server.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar, tagged_json_grammar

from .gbnf import accepts, parse, undefined_refs

pytestmark = pytest.mark.fast


def ok(schema: Any, doc: Any) -> bool:
    return accepts(schema_to_grammar(schema), json.dumps(doc))


def test_object_with_required_and_optional_properties_in_declaration_order() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "ok": {"type": "boolean"}},
        "required": ["name"],
    }
    assert ok(schema, {"name": "Ann"})
    assert ok(schema, {"name": "Ann", "age": 3, "ok": True})
    assert ok(schema, {"name": "Ann", "ok": False})
    assert not ok(schema, {"age": 3})  # name is required
    assert not ok(schema, {"name": 1})
    assert not ok(schema, {"name": "Ann", "age": 1.5})


def test_only_optional_properties_allow_any_ordered_subset() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "number"}}}
    for doc in ({}, {"a": None}, {"b": -1.5e3}, {"a": None, "b": 2}):
        assert ok(schema, doc), doc
    assert not ok(schema, {"b": 2, "a": None})
    assert not ok(schema, {"c": 1})


def test_arrays_with_bounds_enums_consts_and_string_lengths() -> None:
    assert ok({"type": "array", "items": {"type": "integer"}}, [])
    bounded = {"type": "array", "items": {"enum": ["x", 2, None]}, "minItems": 1, "maxItems": 2}
    assert ok(bounded, ["x"]) and ok(bounded, [2, None])
    assert not ok(bounded, []) and not ok(bounded, ["x", "x", "x"]) and not ok(bounded, ["y"])
    assert ok({"type": "array", "maxItems": 0}, []) and not ok({"type": "array", "maxItems": 0}, [1])
    assert ok({"type": "array", "items": {"type": "string"}, "minItems": 2}, ["a", "b", "c"])
    assert not ok({"type": "array", "items": {"type": "string"}, "minItems": 2}, ["a"])
    assert ok({"type": "array", "items": {"type": "string"}, "maxItems": 2}, ["a", "b"])
    assert ok({"const": {"v": 1}}, {"v": 1}) and not ok({"const": {"v": 1}}, {"v": 2})
    short = {"type": "string", "minLength": 2, "maxLength": 3}
    assert ok(short, "ab") and ok(short, "abc") and not ok(short, "a") and not ok(short, "abcd")
    assert ok({"type": "string", "minLength": 1}, "long enough") and not ok(
        {"type": "string", "minLength": 1}, ""
    )
    assert ok({"type": "string"}, 'quote " and \\ and \u00e9')


def test_unions_type_lists_refs_and_allof() -> None:
    union = {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "boolean"}}]}
    assert ok(union, 3) and ok(union, [True]) and not ok(union, "3")
    assert ok({"oneOf": [{"type": "string"}, {"type": "null"}]}, None)
    assert ok({"type": ["string", "null"]}, "s") and ok({"type": ["string", "null"]}, None)
    assert not ok({"type": ["string", "null"]}, 1)
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["v"],
            }
        },
        "$ref": "#/$defs/node",
    }
    assert ok(tree, {"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": []}]})
    assert not ok(tree, {"v": 1, "kids": [{"w": 2}]})
    merged = {
        "definitions": {"named": {"properties": {"name": {"type": "string"}}, "required": ["name"]}},
        "allOf": [
            {"$ref": "#/definitions/named"},
            {"properties": {"n": {"type": "integer"}}, "required": ["n"]},
        ],
        "type": "object",
    }
    assert ok(merged, {"name": "a", "n": 1}) and not ok(merged, {"name": "a"})
    implied = {"properties": {"x": {}}, "required": ["x"]}  # no "type": an object by its properties
    assert ok(implied, {"x": [1, {"y": "z"}]})
    assert ok({"items": {"type": "null"}}, [None, None])
    anything = {"type": "object", "properties": {"t": True, "e": {}, "d": {"description": "any"}}}
    assert ok(anything, {"t": ["thing"], "e": 1, "d": {"s": None}}) and ok({}, 1)


def test_any_json_object_and_whitespace() -> None:
    assert accepts(JSON_OBJECT_GRAMMAR, '{"a": [1, 2.5, "x", null, true], "b": {}}')
    assert accepts(JSON_OBJECT_GRAMMAR, '{\n  "a": 1\n}')
    assert not accepts(JSON_OBJECT_GRAMMAR, "[1]")
    assert not accepts(JSON_OBJECT_GRAMMAR, '{"a": 1')


def test_tagged_tool_call_blocks() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"const": "get_weather"}, "arguments": {"type": "object"}},
        "required": ["name", "arguments"],
    }
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    many = tagged_json_grammar(schema, "<tool_call>", "</tool_call>")
    assert accepts(many, call) and accepts(many, call + "\n" + call)
    assert not accepts(many, call.replace("get_weather", "rm_rf"))
    one = tagged_json_grammar(schema, "<tool_call>", "</tool_call>", repeat=False)
    assert accepts(one, call) and not accepts(one, call + call)


def test_rule_names_are_unique_and_every_reference_is_defined() -> None:
    schema = {
        "type": "object",
        "properties": {
            "root": {"type": "string"},
            "string": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}},
            "a b/c": {"type": "object", "properties": {"ws": {"enum": ["line\nbreak", "tab\t", 'q"']}}},
        },
        "required": ["root"],
    }
    grammar = schema_to_grammar(schema)
    names = [line.split("::=")[0].strip() for line in grammar.splitlines()]
    assert len(names) == len(set(names))
    assert not undefined_refs(parse(grammar))
    assert ok(schema, {"root": "r", "string": ["s", {}], "a b/c": {"ws": "line\nbreak"}})


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ([1], "must be an object"),
        ({"type": "object", "properties": {"x": 3}}, "must be an object"),
        ({"type": "tuple"}, "unsupported JSON schema type"),
        ({"$ref": "https://example.com/s.json"}, "only local $ref"),
        ({"$ref": "#/$defs/missing"}, "does not resolve"),
        ({"enum": []}, "enum must be a non-empty list"),
        ({"anyOf": []}, "anyOf must be a non-empty list"),
        # bounds no value can meet: llama.cpp's parser expands {5,2} about 2^64 times (memory without end)
        ({"type": "string", "minLength": 5, "maxLength": 2}, "minLength (5) is greater than maxLength (2)"),
        ({"type": "array", "minItems": 3, "maxItems": 1}, "minItems (3) is greater than maxItems (1)"),
        # bounds that are not counts (a ValueError inside the converter was a 500)
        ({"type": "string", "minLength": "x"}, 'minLength must be a non-negative integer, not "x"'),
        ({"type": "string", "maxLength": -1}, "maxLength must be a non-negative integer"),
        ({"type": "array", "maxItems": 1.5}, "maxItems must be a non-negative integer"),
        ({"type": "array", "minItems": True}, "minItems must be a non-negative integer"),
        ({"enum": list(range(1025))}, "enum lists 1025 values; at most 1024"),
    ],
)
def test_schemas_it_cannot_honour_are_invalid_requests(schema: Any, words: str) -> None:
    with pytest.raises(InvalidRequestError, match=re.escape(words)):
        schema_to_grammar(schema)


def test_a_huge_schema_is_refused_instead_of_building_a_huge_grammar() -> None:
    schema = {
        "type": "object",
        "properties": {
            f"p{i}": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"q": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                },
            }
            for i in range(1000)
        },
    }
    with pytest.raises(InvalidRequestError, match="too large"):
        schema_to_grammar(schema)


def test_fifty_optional_properties_make_a_grammar_that_grows_linearly_and_takes_any_ordered_subset() -> None:
    """The subsets used to be spelled out (quadratic): llama.cpp refused the grammar with 50 keys."""
    keys = [f"k{i}" for i in range(50)]
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in keys}}
    grammar = schema_to_grammar(schema)
    assert len(grammar) < 20_000, len(grammar)
    assert not undefined_refs(parse(grammar))
    assert ok(schema, {}) and ok(schema, {"k0": 1}) and ok(schema, {"k49": 1})
    assert ok(schema, {k: i for i, k in enumerate(keys)})
    assert ok(schema, {"k3": 1, "k17": 2, "k48": 3})
    assert not ok(schema, {"k17": 2, "k3": 1})  # declaration order
    assert not ok(schema, {"k3": "x"})
