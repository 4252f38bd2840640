"""Fixtures for the model layer: isolated store and Docker config, real registries, a packaged model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dmr.models.package import package
from dmr.models.push import push
from dmr.models.store import Store

from .registry_server import Registry, running_registry

#: Fixed so the packaged SmolLM2 has the same digest in every run.
CREATED = 1_700_000_000


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's ~/.docker/config.json or store, nor a DMR_* override."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("DMR_MODELS_PATH", str(tmp_path / "models"))
    monkeypatch.delenv("DMR_DEFAULT_REGISTRY", raising=False)
    monkeypatch.delenv("DMR_INSECURE_REGISTRY", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def source_store(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Store:
    """A store holding the real SmolLM2 packaged once per session, tagged `ai/smollm2:latest`."""
    st = Store(tmp_path_factory.mktemp("source-store"))
    package(st, gguf=smollm2_path, created=CREATED, tags=["ai/smollm2:latest"])
    return st


@pytest.fixture(scope="session")
def smollm2_id(source_store: Store) -> str:
    return source_store.get("ai/smollm2").id


@pytest.fixture(scope="session")
def pushed(registry: Registry, source_store: Store) -> str:
    """SmolLM2 pushed to the session registry; returns its reference there."""
    ref = f"{registry.host}/ai/smollm2:latest"
    source_store.tag("ai/smollm2", ref)
    push(ref, source_store)
    return ref
