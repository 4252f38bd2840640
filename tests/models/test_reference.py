"""Reference normalisation: every form DMR's normalize_test.go and integration tests cover."""

from __future__ import annotations

import pytest

from dmr.errors import InvalidReferenceError
from dmr.models import reference
from dmr.models.reference import Reference

HEX64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("gemma3", "ai/gemma3:latest"),
        ("gemma3:v1", "ai/gemma3:v1"),
        ("myorg/model", "myorg/model:latest"),
        ("myorg/model:v2", "myorg/model:v2"),
        ("ai/gemma3:latest", "ai/gemma3:latest"),
        ("docker.io/ai/gemma3:latest", "ai/gemma3:latest"),
        ("index.docker.io/ai/gemma3", "ai/gemma3:latest"),
        ("registry.example.com/model", "registry.example.com/model:latest"),
        ("registry.example.com/model:v1", "registry.example.com/model:v1"),
        ("registry.example.com/myorg/model:v1", "registry.example.com/myorg/model:v1"),
        ("localhost:5000/model:v1", "localhost:5000/model:v1"),
        ("localhost/model", "localhost/model:latest"),
        ("1234567890ab", "1234567890ab"),
        (HEX64, HEX64),
        (f"sha256:{HEX64}", f"sha256:{HEX64}"),
        ("", ""),
        ("   ", ""),
        ("  gemma3  ", "ai/gemma3:latest"),
        ("model:", "ai/model:latest"),
        ("myorg/model:", "myorg/model:latest"),
        ("abc123", "ai/abc123:latest"),
        ("model-xyz", "ai/model-xyz:latest"),
        ("MyModel", "ai/mymodel:latest"),
        ("MyOrg/MyModel:Q4_K_M", "myorg/mymodel:Q4_K_M"),
        ("hf.co/org/model", "huggingface.co/org/model:latest"),
        ("hf.co/org/model:Q4_K_M", "huggingface.co/org/model:Q4_K_M"),
        ("hf.co/Org/Model-GGUF:Q4_K_M", "huggingface.co/org/model-gguf:Q4_K_M"),
        ("huggingface.co/org/model", "huggingface.co/org/model:latest"),
        ("huggingface.co/org/model:Q4_K_M", "huggingface.co/org/model:Q4_K_M"),
        (f"ai/smollm2@sha256:{HEX64}", f"ai/smollm2@sha256:{HEX64}"),
        (f"ai/smollm2:v1@sha256:{HEX64}", f"ai/smollm2:v1@sha256:{HEX64}"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert reference.normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("1234567890ab", True),
        (HEX64, True),
        ("12345", False),
        (HEX64 + "0", False),
        ("12345678xyz9", False),
        (HEX64[:-3] + "XYZ", False),
        ("1234567890AB", False),
        ("", False),
    ],
)
def test_looks_like_id(raw: str, ok: bool) -> None:
    assert reference.looks_like_id(raw) is ok


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        (f"sha256:{HEX64}", True),
        (HEX64, False),
        (f"sha512:{HEX64}", False),
        ("sha256:invalid", False),
        ("sha256:1234567890ab", False),
        ("sha256:" + HEX64.upper(), False),
        ("", False),
        ("sha256:", False),
    ],
)
def test_looks_like_digest(raw: str, ok: bool) -> None:
    assert reference.looks_like_digest(raw) is ok


@pytest.mark.parametrize(
    ("raw", "hf"),
    [
        ("huggingface.co/org/model:latest", True),
        ("huggingface.co/org/model", True),
        ("registry.example.com/model:latest", False),
        ("ai/gemma3:latest", False),
        ("hf.co/org/model", True),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", True),
        ("", False),
    ],
)
def test_is_huggingface(raw: str, hf: bool) -> None:
    assert reference.is_huggingface(raw) is hf


def test_parsed_parts_and_forms() -> None:
    r = reference.parse("smollm2")
    assert r == Reference("docker.io", "ai/smollm2", "latest", None)
    assert str(r) == "ai/smollm2:latest"
    assert r.full == "docker.io/ai/smollm2:latest"
    assert r.host == "registry-1.docker.io"
    assert r.scheme == "https"
    assert reference.parse("docker.io/ai/smollm2:latest") == r


@pytest.mark.parametrize(
    ("raw", "scheme"),
    [
        ("localhost:5000/a/b", "http"),
        ("localhost/a", "http"),
        ("myhost.local/a/b", "http"),
        ("127.0.0.1:5000/a/b", "http"),
        ("[::1]:5000/a/b", "http"),
        ("registry.example.com/a", "https"),
        ("ai/x", "https"),
    ],
)
def test_scheme(raw: str, scheme: str) -> None:
    assert reference.parse(raw).scheme == scheme


def test_insecure_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMR_INSECURE_REGISTRY", "true")
    assert reference.parse("registry.example.com/a").scheme == "http"


def test_default_registry_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMR_DEFAULT_REGISTRY", "localhost:5000")
    r = reference.parse("smollm2")
    assert (r.registry, r.repository, r.tag) == ("localhost:5000", "ai/smollm2", "latest")
    assert str(r) == "localhost:5000/ai/smollm2:latest"
    assert r.scheme == "http"


@pytest.mark.parametrize(
    "bad",
    [
        "a b",
        "ai/Smol LM",
        "ai/x:bad tag!",
        "ai/x@sha256:zz",
        "UPPER.com//x",
        "ai/-x",
        "sha256:" + HEX64,
        "ai/x:" + "t" * 200,
    ],
)
def test_invalid(bad: str) -> None:
    with pytest.raises(InvalidReferenceError):
        reference.parse(bad)


def test_an_upper_case_name_is_the_same_model_as_lower_case() -> None:
    """DMR lowercases the name: `AI/SmolLM2` is ai/smollm2, not a registry called AI (issue #18, 7)."""
    assert reference.parse("AI/SmolLM2") == reference.parse("ai/smollm2:latest")
    assert reference.parse("MyOrg/MyModel:Q4_K_M") == reference.parse("myorg/mymodel:Q4_K_M")
    assert reference.parse("Registry.Example.com/M:v1").registry == "registry.example.com"
