"""Push a stored model to an OCI registry, skipping blobs the registry already has."""

from __future__ import annotations

import json

from dmr.errors import InvalidReferenceError
from dmr.models import reference
from dmr.models.auth import Credentials
from dmr.models.progress import Progress, ProgressCallback
from dmr.models.registry import RegistryClient
from dmr.models.store import Store


def push(
    ref: str,
    store: Store | None = None,
    progress: ProgressCallback | None = None,
    credentials: Credentials | None = None,
    client_options: dict[str, object] | None = None,
) -> str:
    """Push the local model tagged `ref` to the registry `ref` names; returns the manifest digest."""
    st = store or Store()
    if reference.is_huggingface(ref):
        raise InvalidReferenceError("pushing to Hugging Face is not supported; push to an OCI registry")
    parsed = reference.parse(ref)
    model_id, manifest = st.manifest(ref)
    raw = st.read_manifest(model_id)
    client = RegistryClient(parsed, credentials, **(client_options or {}))  # type: ignore[arg-type]
    blobs = [(d["digest"], d["size"]) for d in manifest["layers"]]
    blobs.append((manifest["config"]["digest"], manifest["config"]["size"]))
    prog = Progress(progress, "push", sum(s for _, s in blobs))
    for digest, size in dict.fromkeys(blobs):
        if client.has_blob(digest):
            prog.update(digest, size, size, force=True)
            continue
        sent = 0

        def on_upload(n: int, digest: str = digest, size: int = size) -> None:
            nonlocal sent
            sent += n
            prog.update(digest, size, sent)

        client.on_upload = on_upload
        try:
            client.push_blob(st.blob_path(digest), digest, size)
        finally:
            client.on_upload = None
        prog.update(digest, size, size, force=True)
    digest = client.put_manifest(raw, parsed.digest or parsed.tag or reference.DEFAULT_TAG)
    assert digest == model_id, json.dumps([digest, model_id])
    prog.success("Model pushed successfully")
    return digest
