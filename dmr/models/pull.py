"""Pull a model from an OCI registry (or Hugging Face) into the store, as `docker model pull` does."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from dmr.models import artifact, huggingface, reference
from dmr.models.auth import Credentials
from dmr.models.blobs import BlobResult, fetch_blob
from dmr.models.progress import Progress, ProgressCallback, iec_size
from dmr.models.pull_result import PullResult
from dmr.models.registry import RegistryClient
from dmr.models.store import Store

#: Layers are fetched in parallel (DMR: one goroutine per layer); bounded so a 50-shard model does
#: not open 50 connections.
MAX_PARALLEL_LAYERS = 4


def pull(
    ref: str,
    store: Store | None = None,
    progress: ProgressCallback | None = None,
    credentials: Credentials | None = None,
    client_options: dict[str, Any] | None = None,
    hf_endpoint: str | None = None,
) -> PullResult:
    """Pull `ref` into `store`; returns the model ID (manifest digest) and transfer counts.

    `credentials` default to Docker's config for the registry (HF: `HF_TOKEN`). Emits DMR progress
    events to `progress`. Raises ModelNotFoundError, RegistryError (incl. auth/digest errors),
    UnsupportedConfigError, StoreError.
    """
    st = store or Store()
    if reference.is_huggingface(ref):
        token = credentials.bearer_token if credentials else None
        return huggingface.pull(ref, st, progress=progress, token=token, endpoint=hf_endpoint)
    parsed = reference.parse(ref)
    client = RegistryClient(parsed, credentials, **(client_options or {}))
    raw, digest = client.get_manifest_raw()
    manifest = artifact.parse_manifest(raw)
    total = artifact.total_size(manifest)
    prog = Progress(progress, "pull", total)
    tags = [str(parsed)] if parsed.tag is not None else []
    if st.has_model(digest):
        st.add(raw, tags)
        prog.success(f"Using cached model: {iec_size(total)}")
        return PullResult(digest, True, [])

    blobs = [(d["digest"], d["size"]) for d in manifest["layers"]]
    blobs.append((manifest["config"]["digest"], manifest["config"]["size"]))
    results = fetch_all(client, st, blobs, prog)
    st.add(raw, tags)
    prog.success("Model pulled successfully")
    return PullResult(digest, False, results)


def fetch_all(
    client: RegistryClient, store: Store, blobs: list[tuple[str, int]], prog: Progress
) -> list[BlobResult]:
    """Fetch blobs in parallel; the first failure cancels what has not started and is raised."""
    unique = list(dict.fromkeys(blobs))
    with concurrent.futures.ThreadPoolExecutor(
        min(MAX_PARALLEL_LAYERS, len(unique)) or 1, thread_name_prefix="dmr-pull"
    ) as pool:
        futures = [
            pool.submit(fetch_blob, client, store, d, s, prog, client.retries, client.backoff)
            for d, s in unique
        ]
        _done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        for f in futures:
            if f.done() and f.exception() is not None:
                for other in futures:
                    other.cancel()
                raise f.exception()  # type: ignore[misc]
        return [f.result() for f in futures]
