"""Hugging Face pulls through huggingface_hub against a local fake hub; DMR's quant selection."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmr.errors import ModelNotFoundError
from dmr.models import artifact, huggingface
from dmr.models.auth import Credentials, RegistryAuthError
from dmr.models.huggingface import contains_quant, parse_reference, select_gguf
from dmr.models.pull import pull
from dmr.models.store import Store

from .fake_hub import FakeHub
from .helpers import write_gguf


@pytest.mark.parametrize(
    ("ref", "repo", "tag"),
    [
        ("huggingface.co/org/model:latest", "org/model", "latest"),
        ("huggingface.co/org/model:Q4_K_M", "org/model", "Q4_K_M"),
        ("huggingface.co/org/model", "org/model", "latest"),
        (
            "huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct:abc123",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "abc123",
        ),
        ("huggingface.co/model:latest", "model", "latest"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q8_0", "bartowski/Llama-3.2-1B-Instruct-GGUF", "Q8_0"),
    ],
)
def test_parse_reference(ref: str, repo: str, tag: str) -> None:
    assert parse_reference(ref) == (repo, tag)


@pytest.mark.parametrize(
    ("name", "quant", "ok"),
    [
        ("model-Q4_K_M.gguf", "Q4_K_M", True),
        ("model.Q4_K_M.gguf", "q4_k_m", True),
        ("model-Q4_K_M-00001-of-00002.gguf", "Q4_K_M", True),
        ("model-Q4_K_M_L.gguf", "Q4_K_M", True),
        ("model-Q4_K_MX.gguf", "Q4_K_M", False),
        ("modelQ4_K_M.gguf", "Q4_K_M", False),
        ("model-IQ4_XS.gguf", "Q4_XS", False),
        ("sub/Q8_0/model-Q8_0.gguf", "Q8_0", True),
        ("Q8_0.gguf", "Q8_0", False),
    ],
)
def test_contains_quant(name: str, quant: str, ok: bool) -> None:
    assert contains_quant(name, quant) is ok


REPO = [
    "model-Q2_K.gguf",
    "model-Q4_K_M.gguf",
    "model-Q8_0.gguf",
    "mmproj-model-F32.gguf",
    "mmproj-model-F16.gguf",
    "UD-Q4_K_XL/model-UD-Q4_K_XL-00001-of-00002.gguf",
    "UD-Q4_K_XL/model-UD-Q4_K_XL-00002-of-00002.gguf",
    "README.md",
    "template.jinja",
]


@pytest.mark.parametrize(
    ("files", "tag", "weights", "mmproj"),
    [
        (REPO, "latest", ["model-Q4_K_M.gguf"], "mmproj-model-F16.gguf"),
        (REPO, "", ["model-Q4_K_M.gguf"], "mmproj-model-F16.gguf"),
        (REPO, "main", ["model-Q4_K_M.gguf"], "mmproj-model-F16.gguf"),
        (REPO, "Q8_0", ["model-Q8_0.gguf"], "mmproj-model-F16.gguf"),
        (REPO, "q2_k", ["model-Q2_K.gguf"], "mmproj-model-F16.gguf"),
        (
            REPO,
            "UD-Q4_K_XL",
            [
                "UD-Q4_K_XL/model-UD-Q4_K_XL-00001-of-00002.gguf",
                "UD-Q4_K_XL/model-UD-Q4_K_XL-00002-of-00002.gguf",
            ],
            "mmproj-model-F16.gguf",
        ),
        (["only.gguf"], "Q8_0", ["only.gguf"], None),
        (["b-F16.gguf", "a-F32.gguf"], "latest", ["a-F32.gguf"], None),
        (
            ["x-00002-of-00002.gguf", "x-00001-of-00002.gguf", "y.gguf"],
            "latest",
            ["x-00001-of-00002.gguf", "x-00002-of-00002.gguf"],
            None,
        ),
        (
            ["m-Q4_K_M-00002-of-00002.gguf", "m-Q4_K_M-00001-of-00002.gguf", "m-Q8_0.gguf"],
            "Q4_K_M",
            ["m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf"],
            None,
        ),
        (["m.gguf", "mmproj-F32.gguf"], "latest", ["m.gguf"], "mmproj-F32.gguf"),
    ],
)
def test_select_gguf(files: list[str], tag: str, weights: list[str], mmproj: str | None) -> None:
    sel = select_gguf(files, tag)
    assert sel.weights == weights
    assert sel.mmproj == mmproj


def test_select_unknown_quant() -> None:
    with pytest.raises(ModelNotFoundError):
        select_gguf(REPO, "Q3_K_S")


@pytest.fixture
def hub(tmp_path: Path, smollm2_path: Path) -> Iterator[FakeHub]:
    root = tmp_path / "hub"
    r = root / "Org" / "Mixed-GGUF"
    (r / "UD-Q4_K_XL").mkdir(parents=True)
    write_gguf(r / "model-Q4_K_M.gguf", n_tensors=1)
    write_gguf(r / "model-Q8_0.gguf", n_tensors=2)
    write_gguf(r / "mmproj-model-F16.gguf", arch="clip")
    write_gguf(r / "mmproj-model-F32.gguf", arch="clip")
    for i in (1, 2, 3):
        write_gguf(r / "UD-Q4_K_XL" / f"model-UD-Q4_K_XL-{i:05d}-of-00003.gguf", n_tensors=i)
    (r / "LICENSE").write_text("MIT")
    smol = root / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF"
    smol.mkdir(parents=True)
    shutil.copyfile(smollm2_path, smol / "smollm2-135m-instruct-q4_1.gguf")
    st = root / "Org" / "Tiny-ST"
    st.mkdir(parents=True)
    from .test_package import _safetensors

    _safetensors(st / "model.safetensors", {"w": ("F16", [2, 2])})
    (st / "config.json").write_text('{"max_position_embeddings": 512}')
    (st / "LICENSE").write_text("Apache")
    h = FakeHub(root)
    yield h
    h.close()


def test_pull_real_smollm2_from_hub(hub: FakeHub, tmp_path: Path, smollm2_path: Path) -> None:
    store = Store(tmp_path / "s")
    events: list[dict] = []  # type: ignore[type-arg]
    result = pull(
        "hf.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        store,
        progress=events.append,
        hf_endpoint=hub.endpoint,
    )
    model = store.get("hf.co/huggingfacetb/smollm2-135m-instruct-gguf")
    assert model.id == result.model_id
    assert model.tags == ["huggingface.co/huggingfacetb/smollm2-135m-instruct-gguf:latest"]
    assert model.config["quantization"] == "Q4_1" and model.config["context_size"] == 8192
    assert model.created == 1748779200  # repo lastModified: deterministic digest
    (layer,) = store.manifest(model.id)[1]["layers"]
    assert store.blob_path(layer["digest"]).read_bytes() == smollm2_path.read_bytes()
    messages = [e["message"] for e in events]
    assert messages[:2] == ["Fetching file list...", "Selected Q4_K_M quantization (default)"]
    assert messages[-1] == "Model pulled successfully"
    again = pull(
        "huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:latest", store, hf_endpoint=hub.endpoint
    )
    assert again.cached and again.model_id == model.id
    assert not list(store.tmp_dir.iterdir())


def test_pull_sharded_subfolder_quant_with_mmproj(hub: FakeHub, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    mid = pull("hf.co/Org/Mixed-GGUF:UD-Q4_K_XL", store, hf_endpoint=hub.endpoint).model_id
    layers = store.manifest(mid)[1]["layers"]
    assert [la["mediaType"] for la in layers] == [artifact.LAYER_GGUF] * 3 + [artifact.LAYER_MMPROJ]
    assert [la["annotations"][artifact.ANNOTATION_FILEPATH] for la in layers] == [
        "model-UD-Q4_K_XL-00001-of-00003.gguf",
        "model-UD-Q4_K_XL-00002-of-00003.gguf",
        "model-UD-Q4_K_XL-00003-of-00003.gguf",
        "mmproj-model-F16.gguf",
    ]
    assert store.get("hf.co/org/mixed-gguf:UD-Q4_K_XL").id == mid
    assert store.get(mid).config["parameters"] == str(32 * 6)


def test_pull_safetensors_repo(hub: FakeHub, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    mid = pull("hf.co/Org/Tiny-ST", store, hf_endpoint=hub.endpoint).model_id
    manifest = store.manifest(mid)[1]
    assert manifest["config"]["mediaType"] == artifact.CONFIG_V02
    paths = sorted(la["annotations"][artifact.ANNOTATION_FILEPATH] for la in manifest["layers"])
    assert paths == ["config.json", "model.safetensors"]  # license skipped
    assert store.get(mid).config["context_size"] == 512


def test_not_found_and_auth(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(ModelNotFoundError):
        pull("hf.co/Org/Missing", store, hf_endpoint=hub.endpoint)
    with pytest.raises(ModelNotFoundError):
        pull("hf.co/Org/Mixed-GGUF:Q3_K_S", store, hf_endpoint=hub.endpoint)
    hub.token = "hf_secret"
    with pytest.raises(RegistryAuthError):
        pull("hf.co/Org/Mixed-GGUF", store, hf_endpoint=hub.endpoint)
    assert pull(
        "hf.co/Org/Mixed-GGUF:Q8_0",
        store,
        hf_endpoint=hub.endpoint,
        credentials=Credentials(bearer_token="hf_secret"),
    ).model_id
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert pull("hf.co/Org/Mixed-GGUF", store, hf_endpoint=hub.endpoint).model_id
    assert store.check() == []
    assert huggingface.DEFAULT_QUANT == "Q4_K_M"
