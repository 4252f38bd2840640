"""Terminal output shared by the commands: DMR-style tables, sizes, ages, names and progress bars."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import click

from dmr.cli.client import CliError


def display_name(tag: str) -> str:
    """DMR's display form: without `docker.io/` / `index.docker.io/`, `ai/` and `:latest`."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if tag.startswith(prefix):
            tag = tag[len(prefix) :]
    if tag.startswith("ai/"):
        tag = tag[3:]
    return tag.removesuffix(":latest")


def short_id(model_id: str) -> str:
    return model_id.removeprefix("sha256:")[:12]


def human_bytes(n: float) -> str:
    """Binary units with a space, as `docker model ls` prints SIZE ("256.35 MiB")."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def ago(ts: float, now: float | None = None) -> str:
    """go-units HumanDuration + " ago", as DMR's CREATED column."""
    s = max(0.0, (now or time.time()) - ts)
    if s < 1:
        return "Less than a second ago"
    if s < 60:
        return f"{int(s)} seconds ago" if int(s) != 1 else "1 second ago"
    m = s / 60
    if m < 60:
        return "About a minute ago" if int(m) == 1 else f"{int(m)} minutes ago"
    h = m / 60
    if h < 48:
        return "About an hour ago" if round(h) == 1 else f"{round(h)} hours ago"
    d = h / 24
    if d < 14:
        return f"{int(d)} days ago"
    if d < 60:
        return f"{int(d / 7)} weeks ago"
    if d < 365 * 2:
        return f"{int(d / 30)} months ago"
    return f"{int(d / 365)} years ago"


def table(headers: list[str], rows: Iterable[list[str]]) -> str:
    """Left-aligned columns separated by three spaces (Go tabwriter, as DMR prints)."""
    body = [list(map(str, r)) for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]
    lines = []
    for r in [headers, *body]:
        lines.append("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2))


# --- progress ---------------------------------------------------------------------------------------


def progress_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            yield {"type": "progress", "message": line}
            continue
        if isinstance(doc, dict):
            yield doc


def render_progress(events: Iterator[dict[str, Any]], *, tty: bool | None = None) -> str:
    """Show a DMR progress stream: a rich bar per layer (size, speed, ETA) on a terminal, plain lines
    otherwise. Returns the final success message; an `error` event raises CliError."""
    tty = sys.stderr.isatty() if tty is None else tty
    renderer: Callable[[dict[str, Any]], None]
    close: Callable[[], None]
    if tty:
        renderer, close = _rich_renderer()
    else:
        renderer, close = _plain_renderer()
    final = ""
    try:
        for ev in events:
            kind = ev.get("type")
            if kind == "error":
                raise CliError(str(ev.get("message", "failed")).removeprefix("Error: "))
            if kind == "success":
                final = str(ev.get("message", ""))
                continue
            renderer(ev)
    finally:
        close()
    return final


def _plain_renderer() -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    seen: dict[str, int] = {}
    done: set[str] = set()

    def render(ev: dict[str, Any]) -> None:
        layer = ev.get("layer")
        if not isinstance(layer, dict):
            if ev.get("message"):
                click.echo(str(ev["message"]), err=True)
            return
        lid = str(layer.get("id", ""))
        size, current = int(layer.get("size") or 0), int(layer.get("current") or 0)
        verb = "Uploading" if ev.get("mode") == "push" else "Downloading"
        if lid not in seen:
            click.echo(f"{verb} {short_id(lid)} ({human_bytes(size)})", err=True)
        seen[lid] = current
        if size and current >= size and lid not in done:
            done.add(lid)
            click.echo(f"{short_id(lid)}: done", err=True)

    return render, lambda: None


def _rich_renderer() -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    progress.start()
    tasks: dict[str, TaskID] = {}

    def render(ev: dict[str, Any]) -> None:
        layer = ev.get("layer")
        if not isinstance(layer, dict):
            if ev.get("message"):
                progress.console.print(str(ev["message"]))
            return
        lid = str(layer.get("id", ""))
        size, current = int(layer.get("size") or 0), int(layer.get("current") or 0)
        if lid not in tasks:
            tasks[lid] = progress.add_task(short_id(lid), total=size or None)
        progress.update(tasks[lid], completed=current)

    return render, progress.stop
