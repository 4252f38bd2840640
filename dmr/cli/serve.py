"""`dmr serve`: the HTTP server on uvicorn (default 127.0.0.1:12434, loopback only).

Every option has a DMR_* environment equivalent. DMR_HOST may be the URL the CLI uses to find the
server (`http://0.0.0.0:8080`): its host and port are then the bind address.
"""

from __future__ import annotations

from typing import Any

import click

from dmr import config


@click.command()
@click.option("--host", default=None, help="Address to bind (DMR_HOST) [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port (DMR_PORT) [default: 12434].")
@click.option(
    "--models-path",
    type=click.Path(file_okay=False),
    default=None,
    help="Model store directory (DMR_MODELS_PATH).",
)
@click.option(
    "--memory-budget", default=None, help="Bytes resident models may use, e.g. 4G (DMR_MEMORY_BUDGET)."
)
@click.option(
    "--keep-alive", default=None, help="Idle time before unloading, e.g. 5m, 0, -1 (DMR_KEEP_ALIVE)."
)
@click.option(
    "--parallel",
    type=int,
    default=None,
    help="Parallel sequences per model (DMR_PARALLEL).",
)
@click.option(
    "--context-size",
    type=int,
    default=None,
    help="Context tokens per sequence when the model's configuration sets none (DMR_CONTEXT_SIZE).",
)
@click.option("--threads", type=int, default=None, help="CPU threads per model (DMR_THREADS).")
@click.option("--origins", default=None, help="Extra CORS origins, comma-separated (DMR_ORIGINS).")
@click.option(
    "--allowed-hosts",
    default=None,
    help="Host names served beside IP addresses, localhost and Docker's host names, comma-separated; "
    "'*' for any (DMR_ALLOWED_HOSTS).",
)
@click.option(
    "--api-key",
    default=None,
    help="Require `Authorization: Bearer KEY` (or x-api-key) on every route but GET / and GET /health "
    "(DMR_API_KEY).",
)
@click.option(
    "--ollama-port",
    type=click.IntRange(1, 65535),
    default=None,
    envvar="DMR_OLLAMA_PORT",
    help="Also listen on this port (Ollama's is 11434), so Ollama clients with their default host reach "
    "dmr's /api/* routes (DMR_OLLAMA_PORT) [default: off].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(
    host: str | None,
    port: int | None,
    models_path: str | None,
    memory_budget: str | None,
    keep_alive: str | None,
    parallel: int | None,
    context_size: int | None,
    threads: int | None,
    origins: str | None,
    allowed_hosts: str | None,
    api_key: str | None,
    ollama_port: int | None,
    log_level: str,
) -> None:
    """Run the Docker Model Runner compatible HTTP server."""
    import uvicorn

    from dmr.errors import DmrError
    from dmr.models.store import Store
    from dmr.scheduling.backends import default_registry
    from dmr.scheduling.scheduler import Scheduler
    from dmr.server.app import build_app

    flags = {
        "host": host,
        "port": port,
        "models_path": models_path,
        "memory_budget": memory_budget,
        "keep_alive": keep_alive,
        "parallel": parallel,
        "context_size": context_size,
        "threads": threads,
        "origins": origins,
        "allowed_hosts": allowed_hosts,
        "api_key": api_key,
    }
    try:
        settings = config.ServeSettings.resolve(flags)  # the one place flags, environment and defaults meet
        store = Store(settings.models_path)
        scheduler = Scheduler(
            store,
            budget=settings.memory_budget,
            state_path=settings.state_path,
            keep_alive_s=settings.keep_alive_s,
            n_slots=settings.parallel,
            engine_defaults={"n_threads": settings.threads} if settings.threads else {},
            context_size=settings.context_size,
            backends=default_registry(),  # in-process llama.cpp, and vLLM listed as not installed
        )
    except (DmrError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    app = build_app(
        store,
        scheduler,
        api_key=settings.api_key or "",
        origins=list(settings.origins),
        allowed_hosts=list(settings.allowed_hosts),
        max_body=settings.max_body,
        log_dir=settings.log_dir,
    )
    if ollama_port is None:
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level=log_level, timeout_graceful_shutdown=5
        )
        return
    if ollama_port == settings.port:
        raise click.ClickException(f"--ollama-port {ollama_port} is the server's own port")
    # One server, one app, two listening sockets: Ollama's port answers every route, and `GET /` there
    # says what Ollama's does (clients probe it).
    main = uvicorn.Config(
        _ollama_root(app, ollama_port),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
    sockets = [main.bind_socket(), uvicorn.Config(app, host=settings.host, port=ollama_port).bind_socket()]
    uvicorn.Server(main).run(sockets=sockets)


def _ollama_root(app: Any, port: int) -> Any:
    """`app`, but `GET /` on the Ollama port answers Ollama's `Ollama is running`."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        server = scope.get("server") or (None, None)
        if scope["type"] == "http" and scope["path"] == "/" and server[1] == port:
            from starlette.responses import PlainTextResponse

            await PlainTextResponse("Ollama is running")(scope, receive, send)
            return
        await app(scope, receive, send)

    return wrapped
