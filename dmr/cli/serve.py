"""`dmr serve`: the HTTP server on uvicorn (default 127.0.0.1:12434, loopback only)."""

from __future__ import annotations

import click

from dmr import config


@click.command()
@click.option("--host", default=config.DEFAULT_HOST, show_default=True, help="Address to bind (DMR_HOST).")
@click.option("--port", default=config.DEFAULT_PORT, show_default=True, type=int, help="Port (DMR_PORT).")
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
@click.option("--parallel", type=int, default=None, help="Parallel sequences per model (DMR_PARALLEL).")
@click.option("--threads", type=int, default=None, help="CPU threads per model (llama.cpp -t).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(
    host: str,
    port: int,
    models_path: str | None,
    memory_budget: str | None,
    keep_alive: str | None,
    parallel: int | None,
    threads: int | None,
    log_level: str,
) -> None:
    """Run the Docker Model Runner compatible HTTP server."""
    import uvicorn

    from dmr.models.store import Store
    from dmr.scheduling.scheduler import Scheduler, parse_keep_alive
    from dmr.server.app import build_app

    store = Store(models_path)
    engine_defaults = {"n_threads": threads} if threads else {}
    scheduler = Scheduler(
        store,
        budget=config.parse_bytes(memory_budget) if memory_budget else None,
        keep_alive_s=parse_keep_alive(keep_alive) if keep_alive is not None else None,
        n_slots=parallel,
        engine_defaults=engine_defaults,
    )
    app = build_app(store, scheduler)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
