"""Model commands: pull, push, tag, rm, ls, inspect, package (DMR's `/models` API, reference §2.2)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from dmr.cli.client import RETRY_DELAYS_S, RETRY_STATUSES, Client, CliError, HTTPStatusError, NetworkError
from dmr.cli.client import model_path as mp
from dmr.cli.output import (
    ago,
    display_name,
    print_json,
    progress_events,
    render_progress,
    short_id,
    table,
)


def _is_hf(ref: str) -> bool:
    return ref.startswith(("hf.co/", "huggingface.co/"))


def with_retries(action: Callable[[], str], what: str) -> str:
    """DMR's retry policy for pull/push: 4 retries after 1, 2, 4, 8 s; network errors and 502/503/504 only."""
    for delay in (*RETRY_DELAYS_S, None):
        try:
            return action()
        except (NetworkError, HTTPStatusError) as exc:
            retryable = isinstance(exc, NetworkError) or exc.status in RETRY_STATUSES
            if not retryable or delay is None:
                raise
            click.echo(f"{what} failed ({exc.message}); retrying in {delay:g}s...", err=True)
            time.sleep(delay)
    raise AssertionError("unreachable")


def pull_model(client: Client, ref: str) -> str:
    body: dict[str, Any] = {"from": ref}
    token = os.environ.get("HF_TOKEN")
    if token and _is_hf(ref):
        body["bearer-token"] = token

    def once() -> str:
        headers = {"Accept": "application/json"}
        with client.stream("POST", "/models/create", json=body, headers=headers) as resp:
            return render_progress(progress_events(resp.iter_lines()))

    return with_retries(once, "pull")


@click.command()
@click.argument("model")
def pull(model: str) -> None:
    """Pull a model from Docker Hub, an OCI registry or Hugging Face."""
    with Client() as client:
        click.echo(pull_model(client, model) or "Model pulled successfully")


@click.command()
@click.argument("model")
def push(model: str) -> None:
    """Push a local model to its registry."""
    body: dict[str, Any] = {}
    token = os.environ.get("HF_TOKEN")
    if token and _is_hf(model):
        body["bearer-token"] = token

    def once() -> str:
        headers = {"Accept": "application/json"}
        with client.stream("POST", f"/models/{mp(model)}/push", json=body, headers=headers) as resp:
            return render_progress(progress_events(resp.iter_lines()))

    with Client() as client:
        click.echo(with_retries(once, "push") or "Model pushed successfully")


def split_target(target: str) -> tuple[str, str]:
    """`repo[:tag]` -> (repo, tag); a colon inside the registry host (`localhost:5000/x`) is not a tag."""
    repo, sep, tag = target.rpartition(":")
    if not sep or "/" in tag:
        return target, "latest"
    return repo, tag


def tag_model(client: Client, source: str, target: str) -> str:
    repo, tag = split_target(target)
    doc = client.post_json(f"/models/{mp(source)}/tag", None, params={"repo": repo, "tag": tag})
    return str(doc.get("target", f"{repo}:{tag}")) if isinstance(doc, dict) else f"{repo}:{tag}"


@click.command()
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Give the model SOURCE (name, ID or short ID) the name TARGET."""
    with Client() as client:
        tag_model(client, source, target)
        click.echo(f"Model {source} tagged successfully with {target}")


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Delete by ID even when the model has several tags.")
def rm(models: tuple[str, ...], force: bool) -> None:
    """Remove local models."""
    failed = []
    with Client() as client:
        for m in models:
            try:
                resp = client.request("DELETE", f"/models/{mp(m)}", params={"force": str(force).lower()})
            except HTTPStatusError as exc:
                click.echo(f"Error: {m}: {exc.message}", err=True)
                failed.append(m)
                continue
            for entry in resp.json():
                for k, v in entry.items():
                    click.echo(f"{k}: {v}")
    if failed:
        raise SystemExit(1)


def _context(cfg: dict[str, Any]) -> str:
    ctx = cfg.get("context_size")
    if not ctx:
        arch = cfg.get("architecture")
        gguf = cfg.get("gguf") or {}
        ctx = gguf.get(f"{arch}.context_length") if arch else None
    return str(ctx) if ctx else ""


def _matches(tag: str, wanted: str) -> bool:
    from dmr.models import reference

    try:
        t, w = reference.parse(tag), reference.parse(wanted)
    except ValueError:
        return tag == wanted
    has_tag = ":" in wanted.rsplit("/", 1)[-1] or "@" in wanted
    return t.same_name(w) and (not has_tag or t.tag == w.tag)


def ls_rows(models: list[dict[str, Any]], wanted: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    rows = []
    for m in models:
        tags = m.get("tags") or []
        if wanted:
            tags = [t for t in tags if _matches(t, wanted)]
            if not tags and not short_id(m["id"]).startswith(wanted.removeprefix("sha256:")[:12]):
                continue
        for t in tags or ["<none>"]:
            rows.append((display_name(t) if t != "<none>" else t, m))
    yield from sorted(rows, key=lambda r: r[0])


@click.command("ls")
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print GET /models as JSON.")
@click.option("--openai", is_flag=True, help="Print the OpenAI model list (GET /engines/v1/models).")
@click.option("-q", "--quiet", is_flag=True, help="Only model IDs (12 characters).")
def ls(model: str | None, as_json: bool, openai: bool, quiet: bool) -> None:
    """List local models."""
    if quiet and openai:
        raise click.UsageError("--quiet cannot be used with --openai")
    with Client() as client:
        if openai:
            print_json(client.get_json("/engines/v1/models"))
            return
        models: list[dict[str, Any]] = client.get_json("/models")
    if model:
        keep = {id(m) for _, m in ls_rows(models, model)}
        models = [m for m in models if id(m) in keep]
    if as_json:
        print_json(models)
        return
    if quiet:
        for mid in dict.fromkeys(short_id(m["id"]) for m in models):
            click.echo(mid)
        return
    headers = [
        "MODEL NAME", "PARAMETERS", "QUANTIZATION", "ARCHITECTURE", "MODEL ID", "CREATED", "CONTEXT", "SIZE"
    ]  # fmt: skip
    rows = []
    for name, m in ls_rows(models, None):
        cfg = m.get("config") or {}
        rows.append(
            [
                name,
                str(cfg.get("parameters", "")),
                str(cfg.get("quantization", "")),
                str(cfg.get("architecture", "")),
                short_id(m["id"]),
                ago(m.get("created") or 0) if m.get("created") else "",
                _context(cfg),
                str(cfg.get("size", "")),
            ]
        )
    click.echo(table(headers, rows))


@click.command()
@click.argument("model")
@click.option("--openai", is_flag=True, help="The OpenAI model object (GET /engines/v1/models/MODEL).")
@click.option("-r", "--remote", is_flag=True, help="Ask the registry instead of the local store.")
def inspect(model: str, openai: bool, remote: bool) -> None:
    """Show a model's details as JSON."""
    with Client() as client:
        if openai:
            print_json(client.get_json(f"/engines/v1/models/{mp(model)}"))
        else:
            params = {"remote": "true"} if remote else None
            print_json(client.get_json(f"/models/{mp(model)}", params=params))


#: GGUF keys `show` leaves out: long (the chat template, shown by its size) or of no use to a reader.
_SHOW_SKIP = (
    "tokenizer.chat_template",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
)


@click.command()
@click.argument("model")
@click.option("-r", "--remote", is_flag=True, help="Ask the registry instead of the local store.")
def show(model: str, remote: bool) -> None:
    """Show a model's information: format, architecture, parameters, quantization, context, GGUF metadata."""
    with Client() as client:
        doc = client.get_json(f"/models/{mp(model)}", params={"remote": "true"} if remote else None)
    cfg = doc.get("config") or {}
    tags = doc.get("tags") or []
    rows = [
        ("Model", display_name(tags[0]) if tags else model),
        ("ID", str(doc.get("id", ""))[7:19]),
        ("Format", cfg.get("format", "")),
        ("Architecture", cfg.get("architecture", "")),
        ("Parameters", cfg.get("parameters", "")),
        ("Quantization", cfg.get("quantization", "")),
        ("Context", _context(cfg)),
        ("Size", cfg.get("size", "")),
    ]
    if doc.get("created"):
        rows.append(("Created", ago(int(doc["created"]))))
    if len(tags) > 1:
        rows.append(("Tags", ", ".join(display_name(t) for t in tags)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        if value:
            click.echo(f"{key + ':':<{width + 2}}{value}")
    gguf = cfg.get("gguf") or {}
    if gguf:
        click.echo("\nGGUF metadata:")
        template = gguf.get("tokenizer.chat_template")
        for key in sorted(gguf):
            if key not in _SHOW_SKIP:
                click.echo(f"  {key}: {gguf[key]}")
        if template:
            click.echo(
                f"  tokenizer.chat_template: ({len(str(template))} characters; `dmr inspect` shows it)"
            )


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def purge(force: bool) -> None:
    """Remove every local model (DELETE /models/purge)."""
    if not force and not click.confirm("This removes all local models. Continue?", default=False):
        click.echo("Aborted.")
        raise SystemExit(1)
    with Client() as client:
        client.request("DELETE", "/models/purge")
    click.echo("All local models removed.")


# --- package --------------------------------------------------------------------------------------------


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


@click.command()
@click.argument("target")
@click.option("--gguf", type=click.Path(exists=True, dir_okay=False), help="GGUF file (first shard).")
@click.option(
    "--safetensors-dir", type=click.Path(exists=True, file_okay=False), help="Directory of safetensors."
)
@click.option("--from", "source", help="Repackage an existing local model.")
@click.option("-l", "--license", "licenses", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--mmproj", type=click.Path(exists=True, dir_okay=False), help="Multimodal projector.")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False), help="Jinja chat template.")
@click.option("--context-size", type=int, default=0, help="Default context size (0 = unset).")
@click.option("--push", "do_push", is_flag=True, help="Push to the registry instead of loading locally.")
def package(
    target: str,
    gguf: str | None,
    safetensors_dir: str | None,
    source: str | None,
    licenses: tuple[str, ...],
    mmproj: str | None,
    chat_template: str | None,
    context_size: int,
    do_push: bool,
) -> None:
    """Package a GGUF or safetensors model as an OCI artifact named TARGET."""
    if sum(x is not None for x in (gguf, safetensors_dir, source)) != 1:
        raise click.UsageError("give exactly one of --gguf, --safetensors-dir or --from")
    if source is not None:
        if licenses or mmproj or chat_template or do_push or context_size <= 0:
            raise click.UsageError("--from supports only --context-size (a positive number)")
        with Client() as client:
            client.post_json(
                f"/models/{mp(source)}/repackage", {"target": target, "context_size": context_size}
            )
        click.echo(f"Model repackaged successfully as {target}")
        return
    from dmr.errors import DmrError
    from dmr.models.package import package as build
    from dmr.models.store import Store
    from dmr.models.tarball import export

    with tempfile.TemporaryDirectory(prefix="dmr-package-") as tmp:
        store = Store(Path(tmp) / "store")
        try:
            click.echo("Packaging model...", err=True)
            model_id = build(
                store,
                gguf=os.path.abspath(gguf) if gguf else None,
                safetensors_dir=safetensors_dir,
                licenses=list(licenses),
                mmproj=mmproj,
                chat_template=chat_template,
                context_size=context_size or None,
                tags=[target] if do_push else None,
            )
            if do_push:
                from dmr.models.progress import iterate
                from dmr.models.push import push as push_to

                click.echo(render_progress(iterate(lambda cb: push_to(target, store, progress=cb))))
                return
            tar = Path(tmp) / "model.tar"
            with tar.open("wb") as f:
                export(store, model_id, f)
        except DmrError as exc:
            raise CliError(str(exc)) from None
        with Client() as client:
            headers = {"Content-Type": "application/x-tar", "Accept": "application/json"}
            with client.stream("POST", "/models/load", content=_file_chunks(tar), headers=headers) as resp:
                render_progress(progress_events(resp.iter_lines()))
            tag_model(client, model_id, target)
    click.echo(f"Model packaged successfully as {target} ({short_id(model_id)})")
