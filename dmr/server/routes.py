"""Thin endpoints: read the request, call serving / the scheduler, map errors in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

import dmr
from dmr.errors import InvalidRequestError, ModelNotFoundError
from dmr.scheduling.backends import engine_info
from dmr.server import serving_chat, serving_completion, serving_embedding, serving_models, sse, ui
from dmr.server.anthropic import routes as anthropic_routes
from dmr.server.endpoints import inference, mapped
from dmr.server.errors import HTTPError
from dmr.server.logbuffer import LOG_BUFFER
from dmr.server.ollama import routes as ollama_routes
from dmr.server.protocol import parse_json
from dmr.server.responses import routes as responses_routes
from dmr.server.state import get_state, read_body

log = logging.getLogger("dmr.server")

ROOT_TEXT = "Docker Model Runner is running\n\nThe service is running.\n"


@mapped
async def models_openai(request: Request) -> Response:
    return await serving_models.list_openai(get_state(request))


@mapped
async def model_openai(request: Request) -> Response:
    return await serving_models.get_openai(get_state(request), request.path_params["name"])


# --- misc ----------------------------------------------------------------------------------------------


async def root(request: Request) -> Response:
    if ui.wants_ui(request):
        return RedirectResponse("/ui/", status_code=302)
    return PlainTextResponse(ROOT_TEXT)


async def version(request: Request) -> Response:
    """DMR's `{"version"}`, the llama.cpp build facts, and each registered backend's status line."""
    backends = get_state(request).scheduler.backends.status()
    return JSONResponse({"version": f"v{dmr.__version__}", **engine_info(), "backends": backends})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(
        get_state(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def logs(request: Request) -> Response:
    follow = request.query_params.get("follow", "").lower() in ("1", "true", "yes")
    lines = LOG_BUFFER.lines()
    if not follow:
        return PlainTextResponse("".join(lines))

    async def tail() -> AsyncIterator[str]:
        queue = LOG_BUFFER.subscribe()
        try:
            for line in lines:
                yield line
            while True:
                yield await queue.get()
        finally:
            LOG_BUFFER.unsubscribe(queue)

    return StreamingResponse(tail(), media_type="text/plain")


# --- model management ---------------------------------------------------------------------------------


@mapped
async def models_list(request: Request) -> Response:
    return await serving_models.list_models(get_state(request))


@mapped
async def models_create(request: Request) -> Response:
    return await serving_models.create_model(get_state(request), request)


@mapped
async def models_load(request: Request) -> Response:
    return await serving_models.load_model(get_state(request), request)


@mapped
async def models_purge(request: Request) -> Response:
    return await serving_models.purge(get_state(request))


_ACTIONS = {("POST", "tag"), ("POST", "push"), ("GET", "export"), ("POST", "repackage")}


@mapped
async def model_ref(request: Request) -> Response:
    """/models/{ref...}[/tag|/push|/export|/repackage]: refs contain slashes, so dispatch here."""
    state = get_state(request)
    ref = request.path_params["ref"].strip("/")
    head, _, last = ref.rpartition("/")
    action = last if head and (request.method, last) in _ACTIONS else None
    if action is not None:
        ref = head
    if not ref:
        raise InvalidRequestError("model reference is required")
    if action == "tag":
        return await serving_models.tag_model(state, request, ref)
    if action == "push":
        return await serving_models.push_model(state, request, ref)
    if action == "export":
        return await serving_models.export_model(state, ref)
    if action == "repackage":
        return await serving_models.repackage(state, request, ref)
    if request.method == "GET":
        if request.query_params.get("remote", "").lower() == "true":
            raise HTTPError(
                501, "remote inspection is not supported; pull the model first", "not_implemented_error"
            )
        return await serving_models.get_model(state, ref)
    if request.method == "DELETE":
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        return await serving_models.delete_model(state, ref, force)
    raise HTTPError(405, f"method {request.method} not allowed here")


# --- engines ------------------------------------------------------------------------------------------


@mapped
async def engines_status(request: Request) -> Response:
    return JSONResponse(get_state(request).scheduler.backends.status())


@mapped
async def engines_ps(request: Request) -> Response:
    return JSONResponse(get_state(request).scheduler.ps())


@mapped
async def engines_df(request: Request) -> Response:
    state = get_state(request)
    usage = await asyncio.to_thread(state.store.disk_usage)
    unreferenced = await asyncio.to_thread(state.store.unreferenced_bytes)
    return JSONResponse(
        {"models_disk_usage": usage, "default_backend_disk_usage": 0, "unreferenced_disk_usage": unreferenced}
    )


@mapped
async def engines_unload(request: Request) -> Response:
    state = get_state(request)
    body = await read_body(request, state.max_body)
    doc: Any = {}
    if body.strip():
        doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidRequestError("request body must be a JSON object")
    models = doc.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise InvalidRequestError("models must be a list of strings")
    n = await state.scheduler.unload(all_models=bool(doc.get("all")), models=models)
    return JSONResponse({"unloaded_runners": n})


@mapped
async def configure(request: Request) -> Response:
    state = get_state(request)
    if request.method == "GET":
        wanted = request.query_params.get("model")
        out = []
        for model_id, ref, cfg in state.scheduler.saved_configs():
            if wanted:
                try:
                    if (await state.scheduler.resolve(wanted)).id != model_id:
                        continue
                except ModelNotFoundError:
                    continue
            out.append(
                {
                    "Backend": "llama.cpp",
                    "Model": ref,
                    "ModelID": model_id,
                    "Mode": cfg.mode or "completion",
                    "Config": cfg.to_api(),
                }
            )
        return JSONResponse(out)
    body = await read_body(request, state.max_body)
    doc = parse_json(body) if body.strip() else None
    if not isinstance(doc, dict):
        raise InvalidRequestError("request body must be a JSON object")
    await state.scheduler.configure(doc)
    return Response(status_code=202)


@mapped
async def requests_(request: Request) -> Response:
    state = get_state(request)
    wanted = request.query_params.get("model")
    ids: set[str] | None = None
    if wanted:
        ids = {(await state.scheduler.resolve(wanted)).id}
    if "text/event-stream" not in request.headers.get("accept", ""):
        return JSONResponse(state.recorder.snapshot(ids))
    include = request.query_params.get("include_existing", "").lower() == "true"

    async def events() -> AsyncIterator[str]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        state.recorder.followers.add(queue)
        try:
            yield sse.event("connected", {"status": "connected"})
            if include:
                for group in state.recorder.snapshot(ids):
                    yield sse.event("new_request", [group])
            while True:
                group = await queue.get()
                if ids is None or any(r["id"].split("_")[0] in ids for r in group["records"]):
                    yield sse.event("new_request", [group])
        finally:
            state.recorder.followers.discard(queue)

    return StreamingResponse(events(), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)


def routes() -> list[BaseRoute]:
    out: list[BaseRoute] = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/version", version, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/logs", logs, methods=["GET"]),
        Route("/models", models_list, methods=["GET"]),
        Route("/models/create", models_create, methods=["POST"]),
        Route("/models/load", models_load, methods=["POST"]),
        Route("/models/purge", models_purge, methods=["DELETE"]),
        Route("/models/{ref:path}", model_ref, methods=["GET", "POST", "DELETE"]),
        Route("/engines/status", engines_status, methods=["GET"]),
        Route("/engines/ps", engines_ps, methods=["GET"]),
        Route("/engines/df", engines_df, methods=["GET"]),
        Route("/engines/unload", engines_unload, methods=["POST"]),
        Route("/engines/_configure", configure, methods=["GET", "POST"]),
        Route("/engines/{backend}/_configure", configure, methods=["GET", "POST"]),
        Route("/engines/requests", requests_, methods=["GET"]),
    ]
    chat = inference(serving_chat.create_chat_completion)
    completion = inference(serving_completion.create_completion)
    embedding = inference(serving_embedding.create_embedding)
    rerank = inference(serving_embedding.create_rerank)
    for prefix in ("/engines/v1", "/engines/{backend}/v1", "/v1"):
        out += [
            Route(f"{prefix}/chat/completions", chat, methods=["POST"]),
            Route(f"{prefix}/completions", completion, methods=["POST"]),
            Route(f"{prefix}/embeddings", embedding, methods=["POST"]),
            Route(f"{prefix}/models", models_openai, methods=["GET"]),
            Route(f"{prefix}/models/{{name:path}}", model_openai, methods=["GET"]),
            Route(f"{prefix}/rerank", rerank, methods=["POST"]),
            Route(f"{prefix}/score", rerank, methods=["POST"]),
        ]
    # litellm's docker_model_runner provider with its documented api_base=<root>/engines/llama.cpp posts to
    # /engines/llama.cpp/chat/completions: the OpenAI routes without the /v1 segment too (after the /v1
    # routes, so that /engines/v1/... keeps matching those).
    for prefix in ("/engines", "/engines/{backend}"):
        out += [
            Route(f"{prefix}/chat/completions", chat, methods=["POST"]),
            Route(f"{prefix}/completions", completion, methods=["POST"]),
            Route(f"{prefix}/embeddings", embedding, methods=["POST"]),
        ]
    # The other dialects DMR speaks, each on the same typed serving path (their own folders)
    out += anthropic_routes.routes() + responses_routes.routes() + ollama_routes.routes()
    out += ui.routes()
    for path in (
        "/rerank",
        "/score",
        "/engines/rerank",
        "/engines/score",
        "/engines/{backend}/rerank",
        "/engines/{backend}/score",
    ):
        out.append(Route(path, rerank, methods=["POST"]))
    return out
