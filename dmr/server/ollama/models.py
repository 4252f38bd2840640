"""Ollama's model management on dmr's store: /api/version, /api/tags, /api/ps, /api/show, /api/delete,
/api/copy, /api/pull, /api/push, /api/create and /api/blobs/:digest.

Pull and push run dmr's own transfers (OCI registries, Hugging Face) and render their progress as
Ollama's status lines (`pulling manifest`, `pulling <digest>` with digest/total/completed, `verifying sha256
digest`, `writing manifest`, `success`); an error after the stream began is an `{"error": ...}` line.
With `"stream": false` the answer is the last status, or the error with its HTTP status. `insecure` is
accepted: dmr already talks plain http to loopback and `.local` registries (DMR_INSECURE_REGISTRY for
every registry), the only ones Ollama's flag is used with in practice."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from dmr.errors import InvalidReferenceError, InvalidRequestError, ModelNotFoundError
from dmr.models import artifact, reference
from dmr.models.progress import ProgressCallback
from dmr.models.store import Model, Store
from dmr.scheduling.backends import engine_info
from dmr.server import serving_models
from dmr.server.errors import HTTPError
from dmr.server.ollama import show, wire
from dmr.server.ollama.chat import resolve
from dmr.server.ollama.renderer import MEDIA_TYPE, error_line, line
from dmr.server.protocol import decode, parse_json
from dmr.server.state import ServerState, read_body

#: The Ollama API level these routes answer as. DMR says "0.1.0", but clients gate features on the
#: version (VS Code's Copilot refuses an Ollama older than 0.6.4); this is the API the routes implement
#: (`think`, whole tool-call objects, `/api/embed` with `dimensions`).
OLLAMA_VERSION = "0.12.0"
#: Blob uploads (/api/create's GGUF files) are as large as the models.
MAX_BLOB_BYTES = 1 << 40
#: What /api/ps shows as the expiry of a model kept forever (Ollama: now + the largest duration).
_FOREVER = timedelta(days=365 * 290)


def version() -> Response:
    return JSONResponse({"version": OLLAMA_VERSION})


async def _body(state: ServerState, request: Request, typ: type[Any]) -> Any:
    """The body as `typ`; an older client's `name` stands in for `model`."""
    body = await read_body(request, state.max_body)
    doc = parse_json(body) if body.strip() else None
    if not isinstance(doc, dict):
        raise InvalidRequestError("request body must be a JSON object")
    if not doc.get("model") and isinstance(doc.get("name"), str):
        doc["model"] = doc["name"]
    return decode(msgspec.json.encode(doc), typ)


# --- listings ------------------------------------------------------------------------------------------


def _size(store: Store, m: Model) -> int:
    with contextlib.suppress(ModelNotFoundError, OSError, ValueError, KeyError):
        return artifact.total_size(store.manifest(m.id)[1])
    return 0


def _tags(store: Store) -> list[dict[str, Any]]:
    out = []
    for m in store.list():
        size, digest = _size(store, m), m.id.removeprefix("sha256:")
        for tag in m.tags:
            out.append(
                {
                    "name": tag,
                    "model": tag,
                    "modified_at": artifact.rfc3339(m.created),
                    "size": size,
                    "digest": digest,
                    "details": show.details(m),
                }
            )
    return out


async def tags(state: ServerState) -> Response:
    return JSONResponse({"models": await asyncio.to_thread(_tags, state.store)})


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=1)
def _gpu_build() -> bool:
    """A GPU build that found its GPU (one that fell back to the CPU says so in a notice)."""
    info = engine_info()
    return str(info.get("backend", "cpu")).lower() not in ("cpu", "unknown", "") and not info.get("notice")


async def ps(state: ServerState) -> Response:
    out = []
    for r in state.scheduler.runners():
        if r.loading or r.engine is None:
            continue
        try:
            model = await asyncio.to_thread(state.store.get, r.model_id)
        except ModelNotFoundError:
            continue
        name = model.tags[0] if model.tags else r.spec.ref
        on_gpu = r.spec.engine_kwargs.get("n_gpu_layers") != 0 and _gpu_build()
        keep = r.spec.keep_alive_s
        now = datetime.now(UTC)
        if keep < 0:
            expires = now + _FOREVER
        else:
            until = r.expires_at()
            expires = (
                datetime.fromtimestamp(until, UTC) if until is not None else now + timedelta(seconds=keep)
            )
        out.append(
            {
                "name": name,
                "model": name,
                "size": r.spec.estimate,
                "digest": model.id.removeprefix("sha256:"),
                "details": show.details(model),
                "expires_at": _rfc3339(expires),
                "size_vram": r.spec.estimate if on_gpu else 0,  # a partial -ngl counts as on the GPU
                "context_length": int(r.engine.n_ctx),
            }
        )
    return JSONResponse({"models": out})


async def show_model(state: ServerState, request: Request) -> Response:
    req: wire.ModelRequest = await _body(state, request, wire.ModelRequest)
    model = await resolve(state, req.model or "")
    sampling = state.scheduler.sampling_defaults(model.id)
    cfg = state.scheduler.runner_config(model.id)
    doc = await asyncio.to_thread(show.show_document, state.store, model, req.verbose, sampling, cfg)
    return JSONResponse(doc)


# --- delete and copy -----------------------------------------------------------------------------------


async def delete(state: ServerState, request: Request) -> Response:
    req: wire.ModelRequest = await _body(state, request, wire.ModelRequest)
    name = req.model or ""
    await resolve(state, name)
    await serving_models.delete_model(state, name, False)  # the runner goes with the model's last tag
    return Response(status_code=200)


async def copy(state: ServerState, request: Request) -> Response:
    body = await read_body(request, state.max_body)
    try:
        req = msgspec.json.decode(body, type=wire.CopyRequest)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidRequestError(f"invalid request: {exc}") from None
    await resolve(state, req.source)
    await asyncio.to_thread(state.store.tag, req.source, req.destination)
    return Response(status_code=200)


# --- pull and push -------------------------------------------------------------------------------------


class ProgressStatus:
    """DMR progress events (dmr.models.progress) -> Ollama status lines."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def first(self) -> dict[str, Any]:
        return {"status": "pulling manifest" if self.mode == "pull" else "retrieving manifest"}

    def convert(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind, layer = event.get("type"), event.get("layer")
        if kind == "progress" and isinstance(layer, dict):
            digest = str(layer.get("id", ""))
            verb = "pulling" if self.mode == "pull" else "pushing"
            return [
                {
                    "status": f"{verb} {digest.removeprefix('sha256:')[:12]}",
                    "digest": digest,
                    "total": int(layer.get("size", 0)),
                    "completed": int(layer.get("current", 0)),
                }
            ]
        if kind == "success":
            if self.mode == "pull":
                return [{"status": s} for s in ("verifying sha256 digest", "writing manifest", "success")]
            return [{"status": "pushing manifest"}, {"status": "success"}]
        message = event.get("message")
        return [{"status": str(message)}] if message else []


async def _progress(
    request: Request, stream: bool, mode: str, work: Callable[[ProgressCallback], Any]
) -> Response:
    status = ProgressStatus(mode)
    if not stream:
        last: dict[str, Any] = {"status": "success"}
        async for event in serving_models.progress_events(work):  # an error raises: its HTTP status
            for doc in status.convert(event):
                last = doc
        return JSONResponse(last)

    async def lines() -> AsyncIterator[str]:
        yield line(status.first())
        try:
            async for event in serving_models.progress_events(work):
                for doc in status.convert(event):
                    yield line(doc)
        except Exception as exc:
            yield error_line(exc)

    return StreamingResponse(lines(), media_type=MEDIA_TYPE)


async def pull(state: ServerState, request: Request) -> Response:
    from dmr.models.pull import pull as do_pull

    req: wire.ModelRequest = await _body(state, request, wire.ModelRequest)
    ref = (req.model or "").strip()
    return await _progress(request, req.stream, "pull", lambda cb: do_pull(ref, state.store, progress=cb))


async def push(state: ServerState, request: Request) -> Response:
    from dmr.models.push import push as do_push

    req: wire.ModelRequest = await _body(state, request, wire.ModelRequest)
    ref = (req.model or "").strip()
    await resolve(state, ref)
    return await _progress(request, req.stream, "push", lambda cb: do_push(ref, state.store, progress=cb))


# --- blobs and create ----------------------------------------------------------------------------------


def _digest(request: Request) -> str:
    digest = str(request.path_params["digest"])
    if not reference.looks_like_digest(digest):
        raise InvalidRequestError(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


async def blob(state: ServerState, request: Request) -> Response:
    """HEAD: 200 when the store has the blob, else 404. POST: the body stored as that blob once its
    sha256 matches the digest (201), else 400."""
    digest = _digest(request)
    if request.method == "HEAD":
        return Response(status_code=200 if state.store.has_blob(digest) else 404)
    store = state.store
    fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="ollama-blob-")
    tmp = Path(name)
    try:
        h = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BLOB_BYTES:
                    raise HTTPError(413, "blob too large")
                h.update(chunk)
                await asyncio.to_thread(f.write, chunk) if len(chunk) > (1 << 20) else f.write(chunk)
        got = "sha256:" + h.hexdigest()
        if got != digest:
            raise InvalidRequestError(f"digest mismatch: the body hashes to {got}, not {digest}")
        await asyncio.to_thread(store.put_blob_file, tmp, digest)
    finally:
        tmp.unlink(missing_ok=True)
    return Response(status_code=201)


def _unsupported(req: wire.CreateRequest) -> str | None:
    if req.quantize:
        return "quantize is not supported: create from a GGUF file that is already quantized"
    if req.adapters:
        return "adapters are not supported"
    if req.system or req.messages:
        return "system and messages are not supported: send them with each request"
    extra = sorted(set(req.parameters or {}) - {"num_ctx"})
    if extra:
        return f"parameters {', '.join(extra)} are not supported (only num_ctx); set sampling per request"
    return None


def _create(store: Store, req: wire.CreateRequest, name: str) -> list[str]:
    """Package the model (blocking); returns its layers' digests."""
    from dmr.models.bundle import model_path
    from dmr.models.package import package

    ctx = (req.parameters or {}).get("num_ctx")
    if ctx is not None and (type(ctx) is not int or ctx < 1):
        raise InvalidRequestError("parameters.num_ctx must be a positive integer")
    files = req.files or {}
    if not files and req.from_ and req.template is None and req.license is None and ctx is None:
        store.tag(req.from_, name)  # nothing changes: the same model under one more name
        return [f for f in store.get(name).files]
    with tempfile.TemporaryDirectory(dir=store.tmp_dir, prefix="ollama-create-") as tmpdir:
        tmp = Path(tmpdir)
        ggufs: list[Path] = []
        for fname, digest in files.items():
            base = os.path.basename(fname)
            if not base or base != fname or not reference.looks_like_digest(digest):
                raise InvalidRequestError(f"files: {fname!r} must be a file name mapped to sha256:<hex>")
            if not store.has_blob(digest):
                raise InvalidRequestError(f"blob {digest} not found: upload it with POST /api/blobs/{digest}")
            if not base.endswith(".gguf"):
                raise InvalidRequestError(f"files: {fname!r} is not a GGUF file (only GGUF is supported)")
            try:
                os.link(store.blob_path(digest), tmp / base)
            except OSError:
                shutil.copyfile(store.blob_path(digest), tmp / base)
            ggufs.append(tmp / base)
        if not ggufs:
            if not req.from_:
                raise InvalidRequestError("create needs files (a GGUF blob) or from (a model)")
            ggufs = [model_path(store, req.from_)]
        template = None
        if req.template is not None:
            try:  # Ollama's own templates are Go templates (`{{ .Prompt }}`): those do not parse
                jinja2.Environment().parse(req.template)
            except jinja2.TemplateSyntaxError as exc:
                raise InvalidRequestError(f"template must be a Jinja chat template: {exc}") from None
            template = tmp / "template.jinja"
            template.write_text(req.template, encoding="utf-8")
        texts = [req.license] if isinstance(req.license, str) else list(req.license or [])
        licenses: list[str | Path] = []
        for i, text in enumerate(texts):
            (tmp / f"LICENSE-{i}").write_text(text, encoding="utf-8")
            licenses.append(tmp / f"LICENSE-{i}")
        first = min(ggufs, key=lambda p: p.name)
        model_id = package(
            store,
            gguf=first,
            chat_template=template,
            licenses=licenses,
            context_size=ctx,
            created=int(time.time()),
            tags=[name],
        )
    return list(store.get(model_id).files)


async def create(state: ServerState, request: Request) -> Response:
    req: wire.CreateRequest = await _body(state, request, wire.CreateRequest)
    name = (req.model or "").strip()
    try:
        reference.parse(name)
    except InvalidReferenceError as exc:
        raise InvalidRequestError(f"invalid model name {name!r}: {exc}") from None
    problem = _unsupported(req)
    if problem is not None:
        raise InvalidRequestError(problem)
    if req.from_:
        await resolve(state, req.from_)
    digests = await asyncio.to_thread(_create, state.store, req, name)
    statuses = [
        {"status": "parsing GGUF"},
        *({"status": f"using existing layer {d}"} for d in digests),
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    if not req.stream:
        return JSONResponse(statuses[-1])
    return Response("".join(line(s) for s in statuses), media_type=MEDIA_TYPE)
