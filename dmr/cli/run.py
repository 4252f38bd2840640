"""`dmr run MODEL [PROMPT...]`: pull if missing, then one streamed answer or an interactive chat.

The chat keeps the whole conversation on the client and sends it every turn, as DMR's CLI does; the
server's prompt cache then recognises the earlier turns' tokens, so only the new turn is prefilled.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

import click
import httpx

from dmr.cli.chat_stream import stream_chat
from dmr.cli.client import Client


def ensure_model(client: Client, model: str) -> None:
    if client.has_model(model):
        return
    from dmr.cli.models import pull_model

    click.echo(f"Unable to find model '{model}' locally. Pulling from the server.", err=True)
    msg = pull_model(client, model)
    if msg:
        click.echo(msg, err=True)


def preload(client: Client, model: str) -> None:
    client.request(
        "POST",
        "/engines/v1/chat/completions",
        json={"model": model, "messages": []},
        headers={"X-Preload-Only": "true"},
    )


def background_preload(url: str, headers: dict[str, str], model: str) -> None:
    """Load the model while the user types the first question (errors surface on that question)."""

    def work() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                url + "/engines/v1/chat/completions",
                json={"model": model, "messages": []},
                headers={**headers, "X-Preload-Only": "true"},
                timeout=600,
            )

    threading.Thread(target=work, name="dmr-preload", daemon=True).start()


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("-d", "--detach", is_flag=True, help="Load the model in the background and exit.")
@click.option("--verbose", is_flag=True, help="Print token counts, time to first token and tokens/s.")
@click.option(
    "--color",
    type=click.Choice(["auto", "yes", "no"]),
    default="no",
    show_default=True,
    help="Show reasoning in italics.",
)
@click.option(
    "--max-tokens", type=click.IntRange(min=1), default=None, help="Stop each answer after N tokens."
)
@click.option(
    "--temperature", type=click.FloatRange(min=0), default=None, help="Sampling temperature (0 = greedy)."
)
@click.option("--debug", is_flag=True, help="Print the requests sent (for bug reports).", hidden=True)
def run(
    model: str,
    prompt: tuple[str, ...],
    detach: bool,
    verbose: bool,
    color: str,
    max_tokens: int | None,
    temperature: float | None,
    debug: bool,
) -> None:
    """Run a model: one answer for PROMPT, or an interactive chat without one."""
    text = " ".join(prompt)
    if not sys.stdin.isatty() and not detach:
        piped = sys.stdin.read()
        if piped.strip():
            text = f"{text}\n\n{piped}" if text else piped
    use_color = color == "yes" or (color == "auto" and sys.stdout.isatty())
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    with Client() as client:
        ensure_model(client, model)
        if detach:
            preload(client, model)
            return
        if text.strip():
            ans = stream_chat(client, model, [{"role": "user", "content": text}], params, color=use_color)
            click.echo()
            if verbose:
                click.echo(ans.footer(), err=True)
            if ans.interrupted:
                raise SystemExit(130)
            return
        from dmr.cli.repl import Repl

        background_preload(client.url, dict(client.http.headers), model)
        repl = Repl(client, model, verbose=verbose, color=use_color)
        repl.params.update(params)
        repl.loop()
