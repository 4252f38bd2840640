"""A small GBNF matcher for tests: does a grammar (llama.cpp's format) accept a whole string?

Backtracking over sets of end positions; enough for the grammars dmr/server/grammar.py writes (literals,
character classes with ranges and escapes, rule references, groups, `|`, `?`, `*`, `+`, `{m}`, `{m,}`,
`{m,n}`). Exponential in the worst case, fine for the short documents tests match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

Node = Union["Lit", "Cls", "Ref", "Alt", "Seq", "Rep"]


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Cls:
    negated: bool
    ranges: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    node: Node
    lo: int
    hi: int | None


_ESC = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "]": "]", "[": "[", "-": "-", "/": "/"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\n":
            self.i += 1

    def char(self, end: str) -> str:
        c = self.s[self.i]
        self.i += 1
        if c != "\\":
            return c
        e = self.s[self.i]
        self.i += 1
        if e == "x":
            code, self.i = self.s[self.i : self.i + 2], self.i + 2
            return chr(int(code, 16))
        if e == "u":
            code, self.i = self.s[self.i : self.i + 4], self.i + 4
            return chr(int(code, 16))
        return _ESC[e]

    def alt(self) -> Node:
        options = [self.seq()]
        while self.i < len(self.s) and self.s[self.i] == "|":
            self.i += 1
            options.append(self.seq())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def seq(self) -> Node:
        items: list[Node] = []
        while True:
            self.ws()
            if self.i >= len(self.s) or self.s[self.i] in "|)":
                return Seq(tuple(items))
            items.append(self.postfix(self.atom()))

    def atom(self) -> Node:
        c = self.s[self.i]
        if c == '"':
            self.i += 1
            out = ""
            while self.s[self.i] != '"':
                out += self.char('"')
            self.i += 1
            return Lit(out)
        if c == "[":
            self.i += 1
            negated = self.s[self.i] == "^"
            self.i += negated
            ranges = []
            while self.s[self.i] != "]":
                lo = self.char("]")
                hi = lo
                if self.s[self.i] == "-" and self.s[self.i + 1] != "]":
                    self.i += 1
                    hi = self.char("]")
                ranges.append((lo, hi))
            self.i += 1
            return Cls(negated, tuple(ranges))
        if c == "(":
            self.i += 1
            node = self.alt()
            assert self.s[self.i] == ")", self.s[self.i :]
            self.i += 1
            return node
        m = re.compile(r"[a-zA-Z0-9-]+").match(self.s, self.i)
        assert m, f"unexpected {self.s[self.i :]!r}"
        self.i = m.end()
        return Ref(m.group())

    def postfix(self, node: Node) -> Node:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in "?*+":
                self.i += 1
                node = Rep(node, 0 if c != "+" else 1, 1 if c == "?" else None)
            elif c == "{":
                m = re.compile(r"\{(\d+)(,(\d*))?\}").match(self.s, self.i)
                assert m
                self.i = m.end()
                lo = int(m.group(1))
                hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
                node = Rep(node, lo, hi)
            else:
                return node
        return node


def parse(grammar: str) -> dict[str, Node]:
    rules: dict[str, Node] = {}
    for line in grammar.splitlines():
        if not line.strip():
            continue
        name, _, body = line.partition("::=")
        p = _Parser(body)
        rules[name.strip()] = p.alt()
        assert p.i == len(body), f"rule {name!r}: trailing {body[p.i :]!r}"
    return rules


def undefined_refs(rules: dict[str, Node]) -> set[str]:
    missing: set[str] = set()

    def walk(n: Node) -> None:
        if isinstance(n, Ref) and n.name not in rules:
            missing.add(n.name)
        for child in _children(n):
            walk(child)

    for node in rules.values():
        walk(node)
    return missing


def _children(n: Node) -> tuple[Node, ...]:
    if isinstance(n, Alt):
        return n.options
    if isinstance(n, Seq):
        return n.items
    if isinstance(n, Rep):
        return (n.node,)
    return ()


def accepts(grammar: str, text: str, root: str = "root") -> bool:
    rules = parse(grammar)
    assert not undefined_refs(rules), undefined_refs(rules)

    def ends(n: Node, i: int) -> set[int]:
        if isinstance(n, Lit):
            return {i + len(n.text)} if text.startswith(n.text, i) else set()
        if isinstance(n, Cls):
            if i >= len(text):
                return set()
            inside = any(lo <= text[i] <= hi for lo, hi in n.ranges)
            return {i + 1} if inside != n.negated else set()
        if isinstance(n, Ref):
            return ends(rules[n.name], i)
        if isinstance(n, Alt):
            return set().union(*(ends(o, i) for o in n.options))
        if isinstance(n, Seq):
            at = {i}
            for item in n.items:
                at = set().union(*(ends(item, j) for j in at)) if at else set()
            return at
        out: set[int] = {i} if n.lo == 0 else set()
        at, count = {i}, 0
        while at and (n.hi is None or count < n.hi):
            at = set().union(*(ends(n.node, j) for j in at)) - (out if count >= n.lo else set())
            count += 1
            if count >= n.lo:
                out |= at
        return out

    return len(text) in ends(Ref(root), 0)
