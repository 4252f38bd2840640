"""Model listings (OpenAI and DMR shapes) and DMR's model management API (/models/...).

Store work is blocking file I/O and network: it runs in worker threads. Pull/push/load answer a
JSON-lines progress stream (reference §3.6); a failure before the first progress event is an HTTP
error with its status (400/401/404/422), after it an `{"type":"error"}` line, as DMR does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from dmr.errors import InvalidRequestError
from dmr.models.progress import ProgressCallback
from dmr.models.store import Model
from dmr.server.errors import HTTPError, error_response
from dmr.server.protocol import parse_json
from dmr.server.state import ServerState, read_body

#: DMR allows two pulls at once.
MAX_CONCURRENT_PULLS = 2
_pulls = asyncio.Semaphore(MAX_CONCURRENT_PULLS)
#: /models/load takes a whole model as a tar body.
MAX_LOAD_BYTES = 1 << 40


def openai_model(m: Model, context: int | None = None) -> dict[str, Any]:
    """`context`: what a request can use (the runner's context, or what a load would give); the model's
    trained maximum is `max_context_window`."""
    cfg = m.config or {}
    return {
        "id": m.tags[0] if m.tags else m.id,
        "object": "model",
        "created": m.created,
        "owned_by": "docker",
        "dmr": {
            "context_window": context if context is not None else cfg.get("context_size"),
            "max_context_window": cfg.get("context_size"),
            "architecture": cfg.get("architecture"),
            "parameters": cfg.get("parameters"),
            "quantization": cfg.get("quantization"),
            "size": cfg.get("size"),
        },
    }


async def list_openai(state: ServerState) -> Response:
    """OpenAI clients poll this route (health checks, model pickers): the body is rendered once per store
    index version and served from memory until the index changes (measured: bench/bench_api.py)."""
    index = state.store.index_version()
    # the contexts change with loads and _configure, not with the index: both are part of the key
    version = None if index is None else (index, state.scheduler.context_revision())
    cached = state.openai_models
    if cached is not None and version is not None and cached[0] == version:
        return Response(cached[1], media_type="application/json")
    models = await asyncio.to_thread(state.store.list)
    data = [openai_model(m, state.scheduler.request_context(m)) for m in models]
    body = json.dumps({"object": "list", "data": data}).encode()
    if version is not None:
        state.openai_models = (version, body)
    return Response(body, media_type="application/json")


async def get_openai(state: ServerState, name: str) -> Response:
    model = await asyncio.to_thread(state.store.get, name)
    return JSONResponse(openai_model(model, state.scheduler.request_context(model)))


async def list_models(state: ServerState) -> Response:
    models = await asyncio.to_thread(state.store.list)
    return JSONResponse([m.to_api() for m in models])


async def get_model(state: ServerState, ref: str) -> Response:
    return JSONResponse((await asyncio.to_thread(state.store.get, ref)).to_api())


async def delete_model(state: ServerState, ref: str, force: bool) -> Response:
    model = await asyncio.to_thread(state.store.get, ref)
    runner = state.scheduler.runner(model.id)
    result = await asyncio.to_thread(state.store.delete, ref, force)
    if runner is not None and any("Deleted" in r for r in result):
        await state.scheduler.unload_runner(runner)
        state.recorder.drop(model.id)
        state.templates.pop(model.id, None)
    return JSONResponse(result)


async def purge(state: ServerState) -> Response:
    await state.scheduler.unload(all_models=True)
    await asyncio.to_thread(state.store.purge)
    state.templates.clear()
    return JSONResponse({"message": "Model store purged"})


async def tag_model(state: ServerState, request: Request, ref: str) -> Response:
    repo = request.query_params.get("repo")
    tag = request.query_params.get("tag") or "latest"
    if not repo:
        raise InvalidRequestError("missing repo or tag query parameter")
    target = await asyncio.to_thread(state.store.tag, ref, f"{repo}:{tag}")
    shown = f"{repo}:{tag}"
    return JSONResponse(
        {"message": f'Model tagged successfully with "{shown}"', "target": target}, status_code=201
    )


async def repackage(state: ServerState, request: Request, ref: str) -> Response:
    from dmr.models.package import repackage as do_repackage

    body = _json_object(await read_body(request, state.max_body))
    target, ctx = body.get("target"), body.get("context_size")
    if not isinstance(target, str) or not target:
        raise InvalidRequestError("target is required")
    if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx <= 0:
        raise InvalidRequestError("context_size must be a positive integer")
    await asyncio.to_thread(do_repackage, state.store, ref, target, ctx)
    return JSONResponse(
        {"message": f"Model repackaged successfully as {target}", "source": ref, "target": target},
        status_code=201,
    )


async def export_model(state: ServerState, ref: str) -> Response:
    from dmr.models.tarball import export

    await asyncio.to_thread(state.store.get, ref)
    fd, path = tempfile.mkstemp(prefix="dmr-export-", suffix=".tar")

    def write() -> None:
        with os.fdopen(fd, "wb") as f:
            export(state.store, ref, f)

    try:
        await asyncio.to_thread(write)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path, media_type="application/x-tar", filename="model.tar", background=BackgroundTask(os.unlink, path)
    )


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return doc


async def progress_stream(request: Request, work: Callable[[ProgressCallback], Any]) -> Response:
    """Run `work(progress)` in a thread and answer its events as JSON lines (an error before the first
    event is an HTTP error; after it, an error line)."""
    events = progress_events(work)
    first: dict[str, Any] | None
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None
    except Exception as exc:
        return error_response(exc)
    media = "application/json" if "application/json" in request.headers.get("accept", "") else "text/plain"

    async def lines() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield json.dumps(first, separators=(",", ":")) + "\n"
            async for item in events:
                yield json.dumps(item, separators=(",", ":")) + "\n"
        except Exception as exc:
            yield json.dumps({"type": "error", "message": f"Error: {exc}"}) + "\n"
        finally:
            await events.aclose()

    return StreamingResponse(lines(), media_type=media)


async def progress_events(work: Callable[[ProgressCallback], Any]) -> AsyncGenerator[dict[str, Any]]:
    """Run `work(progress)` in a worker thread under the concurrent-pull limit and yield its progress
    events as they come; its exception is raised after the events it emitted. For the dialects that
    render progress their own way (Ollama's status lines); DMR's own routes use `progress_stream`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()

    def emit(event: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def run() -> None:
        try:
            work(emit)
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        else:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    async with _pulls:
        fut = loop.run_in_executor(None, run)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            with contextlib.suppress(BaseException):
                await fut


async def create_model(state: ServerState, request: Request) -> Response:
    from dmr.models.auth import Credentials
    from dmr.models.pull import pull

    body = _json_object(await read_body(request, state.max_body))
    ref = body.get("from")
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidRequestError("from is required")
    token = body.get("bearer-token")
    creds = Credentials(bearer_token=token) if isinstance(token, str) and token else None
    return await progress_stream(
        request, lambda cb: pull(ref.strip(), state.store, progress=cb, credentials=creds)
    )


async def push_model(state: ServerState, request: Request, ref: str) -> Response:
    from dmr.models.auth import Credentials
    from dmr.models.push import push

    body = _json_object(await read_body(request, state.max_body))
    token = body.get("bearer-token")
    creds = Credentials(bearer_token=token) if isinstance(token, str) and token else None
    await asyncio.to_thread(state.store.get, ref)
    return await progress_stream(request, lambda cb: push(ref, state.store, progress=cb, credentials=creds))


async def load_model(state: ServerState, request: Request) -> Response:
    from dmr.models.tarball import load

    spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 - closed by the worker
    try:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_LOAD_BYTES:
                raise HTTPError(413, "archive too large")
            await asyncio.to_thread(spool.write, chunk) if len(chunk) > (1 << 20) else spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    if size == 0:
        spool.close()
        raise InvalidRequestError("request body must be a model tar archive")

    def work(cb: ProgressCallback) -> None:
        with spool:
            load(state.store, spool, progress=cb)

    return await progress_stream(request, work)
