"""`dmr serve`: the HTTP server on uvicorn (default 127.0.0.1:12434, loopback only).

Every option has a DMR_* environment equivalent. DMR_HOST may be the URL the CLI uses to find the
server (`http://0.0.0.0:8080`): its host and port are then the bind address.
"""

from __future__ import annotations

import click

from dmr import config


@click.command()
@click.option("--host", default=None, help="Address to bind (DMR_HOST) [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port (DMR_PORT) [default: 12434].")
@click.option(
    "--models-path",
    type=click.Path(file_okay=False),
    default=None,
    envvar="DMR_MODELS_PATH",
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
    envvar="DMR_PARALLEL",
    help="Parallel sequences per model (DMR_PARALLEL).",
)
@click.option(
    "--context-size",
    type=int,
    default=None,
    envvar="DMR_CONTEXT_SIZE",
    help="Context tokens per sequence when the model's configuration sets none (DMR_CONTEXT_SIZE).",
)
@click.option(
    "--threads", type=int, default=None, envvar="DMR_THREADS", help="CPU threads per model (DMR_THREADS)."
)
@click.option(
    "--origins", default=None, envvar="DMR_ORIGINS", help="Extra CORS origins, comma-separated (DMR_ORIGINS)."
)
@click.option(
    "--api-key", default=None, envvar="DMR_API_KEY", help="Require `Authorization: Bearer KEY` (DMR_API_KEY)."
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
    api_key: str | None,
    log_level: str,
) -> None:
    """Run the Docker Model Runner compatible HTTP server."""
    import uvicorn

    from dmr.errors import DmrError
    from dmr.models.store import Store
    from dmr.scheduling.backends import default_registry
    from dmr.scheduling.scheduler import Scheduler, parse_keep_alive
    from dmr.server.app import build_app

    env_host, env_port = config.serve_address()
    try:
        if context_size is not None and context_size <= 0:
            raise click.BadParameter("must be a positive number", param_hint="--context-size")
        store = Store(models_path)
        engine_defaults = {"n_threads": threads} if threads else {}
        scheduler = Scheduler(
            store,
            budget=config.parse_bytes(memory_budget) if memory_budget else None,
            keep_alive_s=parse_keep_alive(keep_alive) if keep_alive is not None else None,
            n_slots=parallel,
            engine_defaults=engine_defaults,
            context_size=context_size,
            backends=default_registry(),  # in-process llama.cpp, and vLLM listed as not installed
        )
    except (DmrError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    extra = [o.strip() for o in origins.split(",") if o.strip()] if origins is not None else None
    app = build_app(store, scheduler, api_key=api_key, origins=extra)
    uvicorn.run(
        app, host=host or env_host, port=port or env_port, log_level=log_level, timeout_graceful_shutdown=5
    )
