"""Runner commands: ps, df, status, version, unload, configure, logs, requests (reference §2.4, §7)."""

from __future__ import annotations

import json
import platform
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import click

import dmr
from dmr.cli.client import Client, CliError, HTTPStatusError, sse_data
from dmr.cli.output import display_name, human_bytes, print_json, table


def _until(r: dict[str, Any], now: float) -> str:
    if r.get("loading"):
        return "Loading..."
    if str(r.get("keep_alive")) == "-1":
        return "Forever"
    if r.get("in_use"):
        return "In use"
    until = r.get("until")
    if isinstance(until, (int, float)):
        left = until - now
        if left <= 0:
            return "Stopping..."
        if left < 60:
            return f"{int(left)} seconds from now"
        return f"{int(left // 60)} minutes from now"
    return ""


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print GET /engines/ps as JSON.")
def ps(as_json: bool) -> None:
    """List running models."""
    with Client() as client:
        runners: list[dict[str, Any]] = client.get_json("/engines/ps")
    if as_json:
        print_json(runners)
        return
    now = time.time()
    rows = [
        [display_name(str(r.get("model_name", ""))), str(r.get("backend_name", "")), str(r.get("mode", "")),
         _until(r, now)]
        for r in runners
    ]  # fmt: skip
    click.echo(table(["MODEL NAME", "BACKEND", "MODE", "UNTIL"], rows))


def _echo_build(doc: dict[str, Any]) -> None:
    """The llama.cpp build facts of a wheel (the client's own, or the server's /version)."""
    if doc.get("llama.cpp"):
        click.echo(f" llama.cpp:  {doc['llama.cpp']}")
    if doc.get("backend"):
        click.echo(f" Backend:    {doc['backend']}")
    kernels = doc.get("cpu_kernels") or {}
    if kernels:
        click.echo(" CPU kernels: " + ", ".join(f"{name} {state}" for name, state in sorted(kernels.items())))
    for d in doc.get("devices") or []:
        mem = d.get("memory_total")
        extra = f", {human_bytes(int(mem))}" if mem else ""
        click.echo(f" Device:     {d.get('name', '')} ({d.get('description', '')}{extra})")
    if doc.get("notice"):
        click.echo(f" Notice:     {doc['notice']}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print GET /engines/df as JSON.")
def df(as_json: bool) -> None:
    """Show disk usage of models and inference engines."""
    with Client() as client:
        doc: dict[str, Any] = client.get_json("/engines/df")
    if as_json:
        print_json(doc)
        return
    rows = [
        ["Models", human_bytes(int(doc.get("models_disk_usage") or 0))],
        ["Inference engine", human_bytes(int(doc.get("default_backend_disk_usage") or 0))],
    ]
    unreferenced = int(doc.get("unreferenced_disk_usage") or 0)
    if unreferenced:  # left by failed operations; `dmr serve` removes it when it starts
        rows.append(["Unreferenced (freed at next start)", human_bytes(unreferenced)])
    click.echo(table(["TYPE", "SIZE"], rows))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="DMR's status JSON (running, backends, endpoint).")
def status(as_json: bool) -> None:
    """Show whether the model runner is running, and its backends. Exit status 1 when it is not."""
    with Client(autostart=False) as client:
        running = client.reachable()
        backends: dict[str, str] = {}
        if running:
            try:
                client.request("GET", "/models")
                backends = client.get_json("/engines/status")
            except CliError:
                running = False
        endpoint = f"{client.url}/engines/v1/"
        doc = {
            "running": running,
            "backends": backends,
            "kind": "dmr",
            "endpoint": endpoint,
            "endpointHost": urlsplit(client.url).netloc,
        }
    if as_json:
        print_json(doc)
    elif running:
        click.echo(f"Docker Model Runner is running at {client.url}")
        click.echo()
        rows = []
        for name, text in backends.items():
            state, _, details = str(text).partition(": ")
            rows.append([name, state, details])
        click.echo(table(["BACKEND", "STATUS", "DETAILS"], rows))
    else:
        click.echo(f"Docker Model Runner is not running at {client.url}")
    if not running:
        raise SystemExit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Client and server versions as JSON.")
def version(as_json: bool) -> None:
    """Show the client and server versions, the llama.cpp build, backend and devices."""
    from dmr.scheduling.backends import engine_info  # loads the engine module: only this command needs it

    # The client is the installed wheel: what it was built with is known without any server.
    client_doc = {
        "version": dmr.__version__,
        "os_arch": f"{sys.platform}/{platform.machine().lower()}",
        "python": platform.python_version(),
        **engine_info(),
    }
    server: dict[str, Any] | None = None
    with Client(autostart=False) as client:
        if client.reachable():
            try:
                server = client.get_json("/version")
            except CliError:
                server = None
    if as_json:
        print_json({"client": client_doc, "server": server})
        return
    click.echo("Client:")
    click.echo(f" Version:    {client_doc['version']}")
    click.echo(f" OS/Arch:    {client_doc['os_arch']}")
    _echo_build(client_doc)
    click.echo()
    click.echo("Server:")
    if server is None:
        click.echo(" Version:    (not reachable)")
        return
    click.echo(f" Version:    {server.get('version', '')}")
    _echo_build(server)
    for name, line in (server.get("backends") or {}).items():
        click.echo(f" Engine:     {name}: {line}")


@click.command()
@click.argument("models", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Unload every model.")
@click.option("--backend", default=None, help="Only this backend's models.")
def unload(models: tuple[str, ...], all_: bool, backend: str | None) -> None:
    """Unload running models (idle ones; a model answering a request stays)."""
    if not models and not all_:
        raise click.UsageError("give MODEL names or --all")
    body: dict[str, Any] = {"all": all_, "models": list(models)}
    if backend:
        body["backend"] = backend
    with Client() as client:
        doc = client.post_json("/engines/unload", body)
    n = int((doc or {}).get("unloaded_runners") or 0)
    click.echo(f"Unloaded {n} model(s)." if n else "No models are running.")


def _show_configs(client: Client, model: str | None) -> None:
    params = {"model": model} if model else None
    print_json(client.get_json("/engines/_configure", params=params))


@click.command(context_settings={"allow_interspersed_args": False})
@click.argument("args", nargs=-1, required=True)
@click.option("--context-size", type=int, default=None, help="Context size in tokens (-1 = model default).")
@click.option("--keep-alive", default=None, help='Idle time before unloading: "5m", "1h", "0", "-1".')
@click.option("--speculative-draft-model", default=None, help="Draft model for speculative decoding.")
@click.option("--speculative-num-tokens", type=int, default=None, help="Tokens drafted per step.")
@click.option("--speculative-min-acceptance-rate", type=float, default=None)
@click.option(
    "--mode", type=click.Choice(["completion", "embedding", "reranking", "image-generation"]), default=None
)
@click.option("--think/--no-think", default=None, help="Reasoning on (budget -1) or off (0).")
def configure(
    args: tuple[str, ...],
    context_size: int | None,
    keep_alive: str | None,
    speculative_draft_model: str | None,
    speculative_num_tokens: int | None,
    speculative_min_acceptance_rate: float | None,
    mode: str | None,
    think: bool | None,
) -> None:
    """Configure MODEL's runner: `dmr configure [OPTIONS] MODEL [-- RUNTIME FLAGS]`, or
    `dmr configure show [MODEL]` to print the stored settings."""
    if args[0] == "show":
        if len(args) > 2:
            raise click.UsageError("configure show takes at most one MODEL")
        with Client() as client:
            _show_configs(client, args[1] if len(args) > 1 else None)
        return
    model, flags = args[0], list(args[1:])
    if flags[:1] == ["--"]:  # options stop at MODEL, so click passes the separator through
        flags = flags[1:]
    body: dict[str, Any] = {"model": model}
    if context_size is not None:
        body["context-size"] = context_size
    if flags:
        body["runtime-flags"] = flags
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    if mode is not None:
        body["mode"] = mode
    spec: dict[str, Any] = {}
    if speculative_draft_model:
        spec["draft_model"] = speculative_draft_model
    if speculative_num_tokens is not None:
        spec["num_tokens"] = speculative_num_tokens
    if speculative_min_acceptance_rate is not None:
        spec["min_acceptance_rate"] = speculative_min_acceptance_rate
    if spec:
        body["speculative"] = spec
    if think is not None:
        body["llamacpp"] = {"reasoning-budget": -1 if think else 0}
    with Client() as client:
        client.request("POST", "/engines/_configure", json=body)
    click.echo(f"Configured {model}.")


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--no-engines", is_flag=True, help="Only the service log (ours has one merged log).")
def logs(follow: bool, no_engines: bool) -> None:
    """Show the model runner's log."""
    params = {"follow": str(follow).lower(), "no-engines": str(no_engines).lower()}
    with Client() as client:
        try:
            with client.stream("GET", "/logs", params=params, timeout=None) as resp:
                for chunk in resp.iter_text():
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
        except KeyboardInterrupt:
            return


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Print new requests as they complete.")
@click.option("--include-existing", is_flag=True, help="With --follow: first print the recorded ones.")
@click.option("--model", default=None, help="Only this model's requests.")
def requests(follow: bool, include_existing: bool, model: str | None) -> None:
    """Show recent requests and responses (JSON), or follow new ones (one JSON document per line)."""
    params: dict[str, str] = {}
    if model:
        params["model"] = model
    with Client() as client:
        if not follow:
            print_json(client.get_json("/engines/requests", params=params))
            return
        if include_existing:
            params["include_existing"] = "true"
        headers = {"Accept": "text/event-stream"}
        try:
            with client.stream(
                "GET", "/engines/requests", params=params, headers=headers, timeout=None
            ) as resp:
                for doc in sse_data(resp):
                    if isinstance(doc, list):
                        click.echo(json.dumps(doc))
        except KeyboardInterrupt:
            return
        except HTTPStatusError:
            raise
