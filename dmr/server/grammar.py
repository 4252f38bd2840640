"""JSON schema -> GBNF (llama.cpp's grammar format), for response_format and generic tool calls.

Our own compact converter for the subset clients send (object/properties/required/additionalProperties,
array/items/minItems/maxItems, enum, const, string with min/maxLength, number, integer, boolean, null,
anyOf/oneOf, type lists, local $ref into $defs/definitions). llama.cpp's complete converter is C++ in
the `common` library we do not link (and its Python port lives in llama.cpp's tree, which we never
vendor). Rules mirror llama.cpp's json-schema-to-grammar output: properties in declaration order
(required ones mandatory, optional ones skippable), bounded whitespace and bounded number lengths so a
small model cannot loop forever inside a value.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dmr.errors import InvalidRequestError

_PRIMITIVES = {
    "ws": r'| " " | "\n" [ \t]{0,20}',
    "boolean": '("true" | "false") ws',
    "null": '"null" ws',
    "integer": '("-"? ([0-9] | [1-9] [0-9]{0,15})) ws',
    "number": '("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,4})? ws',
    "char": r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": r'"\"" char* "\"" ws',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws',
    "array": '"[" ws ( value ("," ws value)* )? "]" ws',
}
_MAX_RULES = 2000


def _literal(text: str) -> str:
    return (
        '"'
        + text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        + '"'
    )


#: The most values an `enum` may list. Each is an alternative llama.cpp's grammar walks for every candidate
#: token on the decode thread every request on the model shares: a 20,000-value enum made a bystander's chat
#: take 25 s instead of 0.03 s.
MAX_ENUM_VALUES = 1024


def _count(schema: dict[str, Any], key: str) -> int | None:
    """A schema's non-negative integer keyword (minLength, maxItems, ...), or None when absent."""
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise InvalidRequestError(f"{key} must be a non-negative integer, not {json.dumps(value)}")
    return int(value)


def _bounds(schema: dict[str, Any], lo_key: str, hi_key: str) -> tuple[int, int | None]:
    lo, hi = _count(schema, lo_key) or 0, _count(schema, hi_key)
    if hi is not None and hi < lo:
        raise InvalidRequestError(f"{lo_key} ({lo}) is greater than {hi_key} ({hi}): no value can match")
    return lo, hi


class _Converter:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.rules: dict[str, str] = {}
        self.used_primitives: set[str] = {"ws"}
        self.refs: dict[str, str] = {}

    def primitive(self, name: str) -> str:
        deps = {
            "string": ["char"],
            "value": ["object", "array", "string", "number", "boolean", "null"],
            "object": ["string", "value"],
            "array": ["value"],
        }
        if name not in self.used_primitives:
            self.used_primitives.add(name)
            for d in deps.get(name, []):
                self.primitive(d)
        return name

    def add(self, name: str, body: str) -> str:
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-") or "r"
        key, i = base, 1
        while key in self.rules or key in _PRIMITIVES or key == "root":
            i += 1
            key = f"{base}{i}"
        if len(self.rules) > _MAX_RULES:
            raise InvalidRequestError("JSON schema is too large to turn into a grammar")
        self.rules[key] = body
        return key

    def resolve_ref(self, ref: str) -> str:
        if ref in self.refs:
            return self.refs[ref]
        if not ref.startswith("#/"):
            raise InvalidRequestError(f"only local $ref are supported, not {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(node, dict) or part not in node:
                raise InvalidRequestError(f"$ref {ref!r} does not resolve")
            node = node[part]
        name = self.add("ref-" + ref.rsplit("/", 1)[-1], "")  # reserve the name (recursion)
        self.refs[ref] = name
        self.rules[name] = self.visit(node, name)
        return name

    def visit(self, schema: Any, name: str) -> str:
        """Returns a GBNF expression matching `schema` (followed by optional whitespace)."""
        if schema is True or schema == {}:
            return self.primitive("value")
        if not isinstance(schema, dict):
            raise InvalidRequestError("a JSON schema must be an object")
        if "$ref" in schema:
            return self.resolve_ref(str(schema["$ref"]))
        if "const" in schema:
            return _literal(json.dumps(schema["const"], ensure_ascii=False)) + " ws"
        if "enum" in schema:
            if not isinstance(schema["enum"], list) or not schema["enum"]:
                raise InvalidRequestError("enum must be a non-empty list")
            if len(schema["enum"]) > MAX_ENUM_VALUES:
                raise InvalidRequestError(
                    f"enum lists {len(schema['enum'])} values; at most {MAX_ENUM_VALUES} are accepted"
                )
            return (
                "(" + " | ".join(_literal(json.dumps(v, ensure_ascii=False)) for v in schema["enum"]) + ") ws"
            )
        for key in ("anyOf", "oneOf"):
            if key in schema:
                alts = schema[key]
                if not isinstance(alts, list) or not alts:
                    raise InvalidRequestError(f"{key} must be a non-empty list")
                return "(" + " | ".join(self.sub(a, f"{name}-{i}") for i, a in enumerate(alts)) + ")"
        if "allOf" in schema and isinstance(schema["allOf"], list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                if isinstance(part, dict):
                    part = self._deref(part)
                    merged.setdefault("properties", {}).update(part.get("properties", {}))
                    merged["required"] = list(merged.get("required", [])) + list(part.get("required", []))
                    merged.setdefault("type", part.get("type"))
            return self.visit(merged, name)
        typ = schema.get("type")
        if isinstance(typ, list):
            return "(" + " | ".join(self.sub({**schema, "type": t}, f"{name}-{t}") for t in typ) + ")"
        if typ is None:
            typ = "object" if "properties" in schema else "array" if "items" in schema else None
        if typ is None:
            return self.primitive("value")
        if typ == "object":
            return self.object(schema, name)
        if typ == "array":
            return self.array(schema, name)
        if typ == "string":
            return self.string(schema)
        if typ in ("number", "integer", "boolean", "null"):
            return self.primitive(str(typ))
        raise InvalidRequestError(f"unsupported JSON schema type {typ!r}")

    def _deref(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            return node if isinstance(node, dict) else {}
        return schema

    def sub(self, schema: Any, name: str) -> str:
        """A named rule for a sub-schema (keeps expressions small and readable)."""
        body = self.visit(schema, name)
        if re.fullmatch(r"[a-zA-Z0-9-]+", body):
            return body
        return self.add(name, body)

    def string(self, schema: dict[str, Any]) -> str:
        self.primitive("string")
        lo, hi = _bounds(schema, "minLength", "maxLength")
        if lo == 0 and hi is None:
            return "string"
        rep = f"{{{lo},{hi}}}" if hi is not None else f"{{{lo},}}"
        return f'"\\"" char{rep} "\\"" ws'

    def array(self, schema: dict[str, Any], name: str) -> str:
        items = schema.get("items", {})
        item = self.sub(items, f"{name}-item")
        lo, hi_n = _bounds(schema, "minItems", "maxItems")
        if hi_n == 0:
            return '"[" ws "]" ws'
        if lo == 0:
            more = f'("," ws {item}){{0,{hi_n - 1}}}' if hi_n is not None else f'("," ws {item})*'
            return f'"[" ws ({item} {more})? "]" ws'
        rest_lo = lo - 1
        more = (
            f'("," ws {item}){{{rest_lo},{hi_n - 1}}}'
            if hi_n is not None
            else f'("," ws {item}){{{rest_lo},}}'
        )
        return f'"[" ws {item} {more} "]" ws'

    def object(self, schema: dict[str, Any], name: str) -> str:
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            return self.primitive("object")
        required = [k for k in schema.get("required", []) if k in props]
        optional = [k for k in props if k not in required]
        kv = {
            k: f'{_literal(json.dumps(k, ensure_ascii=False))} ws ":" ws {self.sub(props[k], f"{name}-{k}")}'
            for k in props
        }
        if required:
            body = ' "," ws '.join(kv[k] for k in required)
            body += "".join(f' ("," ws {kv[k]})?' for k in optional)
            return f'"{{" ws {body} "}}" ws'
        # Only optional keys: any subset in declaration order, commas between. As llama.cpp's converter does,
        # rest-i is "what may follow key i", one rule per key, so the grammar grows linearly with the keys
        # (spelling each subset out grew quadratically, and 50 optional keys no longer parsed).
        rest: list[str] = [""] * len(optional)
        for i in range(len(optional) - 1, 0, -1):
            tail = f" {rest[i + 1]}" if i + 1 < len(optional) else ""
            rest[i] = self.add(f"{name}-rest-{i}", f'("," ws {kv[optional[i]]})?{tail}')
        alts = [kv[k] + (f" {rest[i + 1]}" if i + 1 < len(optional) else "") for i, k in enumerate(optional)]
        return '"{" ws (' + " | ".join(alts) + ')? "}" ws'


def schema_to_grammar(schema: Any, root_rule: str = "root") -> str:
    if not isinstance(schema, dict):
        raise InvalidRequestError("json_schema.schema must be an object")
    conv = _Converter(schema)
    root = conv.visit(schema, "root")
    lines = [f"{root_rule} ::= ws {root}"]
    lines += [f"{k} ::= {v}" for k, v in conv.rules.items()]
    lines += [f"{k} ::= {_PRIMITIVES[k]}" for k in _PRIMITIVES if k in conv.used_primitives]
    return "\n".join(lines) + "\n"


def tagged_json_grammar(schema: Any, open_tag: str, close_tag: str, *, repeat: bool = True) -> str:
    """`open_tag` JSON `close_tag` blocks (one, or one or more with `repeat`) whose JSON matches `schema`:
    Hermes-style tool calls, `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, as llama.cpp's Hermes
    handler constrains them."""
    block = f"block ::= {_literal(open_tag)} ws call {_literal(close_tag)}"
    root = 'root ::= block ("\\n"? block)*' if repeat else "root ::= block"
    return f"{root}\n{block}\n" + schema_to_grammar(schema, root_rule="call")


#: Any JSON object (response_format json_object).
JSON_OBJECT_GRAMMAR = schema_to_grammar({"type": "object"})
