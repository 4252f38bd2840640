"""Fast tier: the one path a runtime flag takes, checked end to end (issue #12). LLAMA_FLAGS maps each
llama-server flag to an EngineConfig field (or a sampling default); LlamaEngine passes each field to the
native Engine.create (or Model.load) argument of the same name, which the compiled module's stub declares
(and stubtest holds the stub to the module). A flag whose field or argument goes missing fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dmr.engine.protocol import GenerationParams
from dmr.scheduling.llama_flags import LLAMA_FLAGS

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[2]
#: Targets the scheduler turns into other fields before the engine sees them: -c's total becomes n_ctx
#: per slot (Scheduler._per_slot_context), and -np stays n_slots.
SCHEDULER_TARGETS = {"ctx_size"}


def _engine_config_fields() -> set[str]:
    tree = ast.parse((ROOT / "dmr/engine/llama.py").read_text())
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "EngineConfig")
    return {s.target.id for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def _native_calls() -> dict[str, dict[str, str]]:
    """`native.X.create(...)` / `native.X.load(...)` in llama.py: keyword -> the cfg field passed to it."""
    tree = ast.parse((ROOT / "dmr/engine/llama.py").read_text())
    calls: dict[str, dict[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (
                isinstance(owner, ast.Attribute)
                and isinstance(owner.value, ast.Name)
                and owner.value.id == "native"
            ):
                name = f"{owner.attr}.{node.func.attr}"
                for kw in node.keywords:
                    value = kw.value
                    if isinstance(value, ast.BoolOp | ast.IfExp):
                        value = next(n for n in ast.walk(value) if isinstance(n, ast.Attribute))
                    from_cfg = isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
                    if kw.arg and from_cfg and value.value.id == "cfg":  # type: ignore[attr-defined]
                        calls.setdefault(name, {})[kw.arg] = value.attr  # type: ignore[attr-defined]
    return calls


def _stub_parameters(cls_name: str, method: str) -> set[str]:
    tree = ast.parse((ROOT / "dmr/_native.pyi").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name)
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method)
    return {a.arg for a in [*fn.args.args, *fn.args.kwonlyargs]}


def test_every_engine_flag_reaches_a_native_argument_of_the_same_name() -> None:
    fields = _engine_config_fields()
    passed = {field: (call, kw) for call, kws in _native_calls().items() for kw, field in kws.items()}
    targets = {t for t, _ in LLAMA_FLAGS.values.values()} | {t for t, _ in LLAMA_FLAGS.switches.values()}
    engine_targets = {t for t in targets if not t.startswith("sampling:")} - SCHEDULER_TARGETS
    assert engine_targets, "no engine flags?"
    for target in sorted(engine_targets):
        assert target in fields, f"{target}: not an EngineConfig field"
        assert target in passed, f"EngineConfig.{target} is never passed to the native module"
        call, kw = passed[target]
        assert kw == target, f"EngineConfig.{target} reaches {call} as {kw!r}: one name along the path"
        cls_name, method = call.split(".")
        assert kw in _stub_parameters(cls_name, method), f"{call} takes no {kw!r}"


def test_every_sampling_flag_is_a_generation_parameter() -> None:
    params = set(GenerationParams.__dataclass_fields__)
    for flag, (target, _) in LLAMA_FLAGS.values.items():
        if target.startswith("sampling:"):
            assert target.removeprefix("sampling:") in params, flag
