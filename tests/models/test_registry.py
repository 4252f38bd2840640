"""Push and pull against a real `docker-registry`: every auth mode, by tag and by digest, progress."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmr.errors import ModelNotFoundError
from dmr.models import artifact, reference
from dmr.models import push as push_mod
from dmr.models.auth import Credentials, RegistryAuthError
from dmr.models.package import package, repackage
from dmr.models.progress import MIN_BYTES
from dmr.models.pull import pull
from dmr.models.push import push
from dmr.models.registry import RegistryClient
from dmr.models.store import Store

from .conftest import CREATED
from .registry_server import PASSWORD, USER, Registry, TokenServer, running_registry


def _blobs(store: Store, model_id: str) -> dict[str, bytes]:
    return {d: store.blob_path(d).read_bytes() for d in store.get(model_id).files}


@pytest.fixture(scope="module", params=["htpasswd", "token"])
def auth_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp(f"reg-{request.param}"), request.param) as reg:
        yield reg


def test_roundtrip_by_tag_and_digest(
    registry: Registry, source_store: Store, smollm2_id: str, pushed: str, tmp_path: Path
) -> None:
    source_blobs = _blobs(source_store, smollm2_id)
    local = Store(tmp_path / "local")
    events: list[dict] = []  # type: ignore[type-arg]
    result = pull(pushed, local, progress=events.append)
    assert result.model_id == smollm2_id and not result.cached
    assert _blobs(local, smollm2_id) == source_blobs
    assert local.read_manifest(smollm2_id) == source_store.read_manifest(smollm2_id)
    assert local.get(pushed).tags == [pushed]
    assert events[-1] == {"type": "success", "message": "Model pulled successfully", "mode": "pull"}

    # rm locally, then pull by digest: same ID, same bytes, no tag added
    assert local.delete(pushed)[-1] == {"Deleted": smollm2_id}
    assert not any(local.blobs_dir.iterdir())
    by_digest = f"{registry.host}/ai/smollm2@{smollm2_id}"
    assert pull(by_digest, local).model_id == smollm2_id
    assert _blobs(local, smollm2_id) == source_blobs
    assert local.get(smollm2_id).tags == []

    # pull again by tag: cached
    events.clear()
    again = pull(pushed, local, progress=events.append)
    assert again.cached and again.downloaded == 0
    assert events[-1]["message"].startswith("Using cached model: ")
    assert local.check() == []


def test_progress_stream_shape_and_rate(
    pushed: str, smollm2_id: str, source_store: Store, tmp_path: Path
) -> None:
    events: list[dict] = []  # type: ignore[type-arg]
    pull(pushed, Store(tmp_path / "s"), progress=events.append)
    updates = [e for e in events if e["type"] == "progress" and "layer" in e]
    total = sum(len(b) for b in _blobs(source_store, smollm2_id).values())
    assert all(e["total"] == total and e["mode"] == "pull" for e in updates)
    assert all(set(e["layer"]) == {"id", "size", "current"} for e in updates)
    assert all(e["message"].startswith("Downloaded: ") for e in updates)
    big = max(updates, key=lambda e: e["layer"]["size"])["layer"]["id"]
    currents = [e["layer"]["current"] for e in updates if e["layer"]["id"] == big]
    assert (currents == sorted(currents) and currents[-1] == currents[0]) or currents[-1] > currents[0]
    # at least one line per MiB (+ one read chunk of slack), ending at the layer's size
    assert max(b - a for a, b in zip([0, *currents], currents, strict=False)) <= 2 * MIN_BYTES
    assert currents[-1] == next(e["layer"]["size"] for e in updates if e["layer"]["id"] == big)
    json.dumps(events)


def test_auth_roundtrip(
    auth_registry: Registry, source_store: Store, smollm2_id: str, tmp_path: Path
) -> None:
    ref = f"{auth_registry.host}/team/smollm2:v1"
    source_store.tag(smollm2_id, ref)
    creds = Credentials(USER, PASSWORD)
    push(ref, source_store, credentials=creds)
    local = Store(tmp_path / "local")
    assert pull(ref, local, credentials=creds).model_id == smollm2_id
    assert local.check() == []
    if auth_registry.auth == "token":
        token_server = next(e for e in auth_registry.extra if isinstance(e, TokenServer))

        # docker-registry lists a scope's actions in Go map order ("pull,push" or "push,pull")
        def actions(scopes: list[str]) -> set[str]:
            return {
                action
                for scope in " ".join(scopes).split()
                if scope.startswith("repository:team/smollm2:")
                for action in scope.rpartition(":")[2].split(",")
            }

        assert any({"pull", "push"} <= actions(s) for s in token_server.requests)

    # credentials from ~/.docker/config.json (DOCKER_CONFIG points at a temp dir)
    docker_dir = Path(os.environ["DOCKER_CONFIG"])
    docker_dir.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": auth}}}))
    other = Store(tmp_path / "other")
    assert pull(ref, other).model_id == smollm2_id

    with pytest.raises(RegistryAuthError) as err:
        pull(ref, Store(tmp_path / "bad"), credentials=Credentials(USER, "wrong"))
    assert err.value.http_status == 401


def test_anonymous_against_auth_registry_is_401(auth_registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(RegistryAuthError):
        pull(f"{auth_registry.host}/team/smollm2:v1", Store(tmp_path / "s"), credentials=Credentials())


def test_push_skips_blobs_the_registry_has(
    registry: Registry, source_store: Store, pushed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = f"{registry.host}/ai/smollm2:ctx2k"
    repackage(source_store, pushed, target, 2048)
    uploaded: list[str] = []
    real = push_mod.RegistryClient.push_blob

    def spy(self: RegistryClient, path: Path, digest: str, size: int) -> None:
        uploaded.append(digest)
        real(self, path, digest, size)

    monkeypatch.setattr(push_mod.RegistryClient, "push_blob", spy)
    push(target, source_store)
    _, manifest = source_store.manifest(target)
    assert uploaded == [manifest["config"]["digest"]]  # the GGUF layer was already there


def test_not_found(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        pull(f"{registry.host}/ai/nothing:here", Store(tmp_path / "s"))
    assert err.value.http_status == 404


def test_unsupported_config_type_is_422(registry: Registry, tmp_path: Path) -> None:
    ref = reference.parse(f"{registry.host}/ai/future:v9")
    client = RegistryClient(ref)
    config = b'{"config":{}}'
    digest = artifact.sha256_digest(config)
    client.push_bytes(config, digest)
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": artifact.MANIFEST_OCI,
            "config": {
                "mediaType": "application/vnd.docker.ai.model.config.v9+json",
                "size": len(config),
                "digest": digest,
            },
            "layers": [],
        }
    ).encode()
    client.put_manifest(raw, "v9")
    with pytest.raises(artifact.UnsupportedConfigError) as err:
        pull(str(ref), Store(tmp_path / "s"))
    assert err.value.http_status == 422


def test_cncf_modelpack_config_is_read(registry: Registry, tmp_path: Path) -> None:
    ref = reference.parse(f"{registry.host}/ai/modelpack:v1")
    client = RegistryClient(ref)
    weights = b"GGUF" + b"\0" * 60
    wd = artifact.sha256_digest(weights)
    client.push_bytes(weights, wd)
    config = json.dumps(
        {
            "descriptor": {"createdAt": "2025-01-02T03:04:05.123456789Z"},
            "config": {"architecture": "llama", "format": "gguf", "paramSize": "1B", "quantization": "Q4_0"},
            "modelfs": {"type": "layers", "diffIds": [wd]},
        }
    ).encode()
    cd = artifact.sha256_digest(config)
    client.push_bytes(config, cd)
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": artifact.MANIFEST_OCI,
            "artifactType": artifact.ARTIFACT_CNCF,
            "config": {"mediaType": artifact.CONFIG_CNCF, "size": len(config), "digest": cd},
            "layers": [{"mediaType": artifact.CNCF_WEIGHT_GGUF, "size": len(weights), "digest": wd}],
        }
    ).encode()
    client.put_manifest(raw, "v1")
    st = Store(tmp_path / "s")
    pull(str(ref), st)
    model = st.get(str(ref))
    assert model.config == {
        "format": "gguf",
        "quantization": "Q4_0",
        "parameters": "1B",
        "architecture": "llama",
    }
    assert model.created == 1735787045


def test_package_push_default_created(registry: Registry, tmp_path: Path) -> None:
    """Same GGUF packaged twice with the fixed time: the registry gets one manifest digest."""
    from .helpers import write_gguf

    src = write_gguf(tmp_path / "m.gguf")
    a = Store(tmp_path / "a")
    ref = f"{registry.host}/ai/tiny:1"
    mid = package(a, gguf=src, created=CREATED, tags=[ref])
    assert push(ref, a) == mid
    b = Store(tmp_path / "b")
    assert package(b, gguf=src, created=CREATED) == mid


def test_pulled_model_loads_and_generates(pushed: str, smollm2_id: str, tmp_path: Path) -> None:
    """The end of the chain: what a pull put in the store is what llama.cpp runs."""
    from dmr import _native as native
    from dmr.models.bundle import model_path

    local = Store(tmp_path / "pulled")
    assert pull(pushed, local).model_id == smollm2_id
    model = native.Model.load(model_path(local, pushed))
    session = native.Session.create(model, n_ctx=512, n_threads=2)
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    assert "Paris" in session.complete(prompt, max_tokens=16, temperature=0.0)
