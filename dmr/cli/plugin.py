"""`dmr install-plugin`: dmr as the Docker CLI's `model` plugin, so that `docker model run ai/smollm2`,
`docker model ls --json` and `docker model status --json` (what Compose and Testcontainers call) run dmr's
CLI, with no Docker daemon.

The Docker CLI finds plugins as `docker-<name>` in `$DOCKER_CONFIG/cli-plugins` (default ~/.docker), asks
each for `docker-cli-plugin-metadata`, and runs `docker-model model <args...>`.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import click

import dmr

#: What the plugin answers to `docker-cli-plugin-metadata` (the Docker CLI plugin protocol).
METADATA = {
    "SchemaVersion": "0.1.0",
    "Vendor": "dmr",
    "Version": dmr.__version__,
    "ShortDescription": "Docker Model Runner (dmr: no daemon)",
    "URL": "https://pypi.org/project/dmr-cpu/",
}

#: The plugin: this interpreter, which has dmr installed. Run by path, so no working directory is put on
#: sys.path (a checkout there would shadow the installed dmr).
SCRIPT = """#!{python}
# Written by `dmr install-plugin`: the Docker CLI's `model` plugin, running dmr's CLI.
import sys
if len(sys.argv) > 1 and sys.argv[1] == "docker-cli-plugin-metadata":
    print({metadata})
    sys.exit(0)
args = sys.argv[1:]
if args and args[0] == "model":  # the Docker CLI passes the plugin's own name first
    args = args[1:]
from dmr.cli.main import cli
cli.main(args=args, prog_name="docker model")
"""


def plugin_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "cli-plugins"


@click.command("install-plugin")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write docker-model (default: $DOCKER_CONFIG/cli-plugins, else ~/.docker/cli-plugins).",
)
def install_plugin(directory: Path | None) -> None:
    """Install dmr as the `docker model` CLI plugin."""
    target_dir = directory or plugin_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "docker-model"
    tmp = target.with_name(".docker-model.tmp")
    tmp.write_text(SCRIPT.format(python=sys.executable, metadata=repr(json.dumps(METADATA))))
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, target)  # replaces Docker Desktop's plugin, if one was there, in one step
    click.echo(f"Installed {target}: `docker model ...` now runs dmr.")
