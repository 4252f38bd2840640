"""`dmr`: a click group whose subcommands live one per module and are imported only when run."""

from __future__ import annotations

import importlib
import os
import sys

import click

import dmr

#: command name -> (module, attribute, one-line help shown by `dmr --help` without importing it)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("dmr.cli.serve", "serve", "Run the Docker Model Runner compatible HTTP server."),
    "run": ("dmr.cli.run", "run", "Run a model: one answer, or an interactive chat."),
    "pull": ("dmr.cli.models", "pull", "Pull a model from a registry or Hugging Face."),
    "push": ("dmr.cli.models", "push", "Push a model to its registry."),
    "tag": ("dmr.cli.models", "tag", "Give a model another name."),
    "rm": ("dmr.cli.models", "rm", "Remove local models."),
    "ls": ("dmr.cli.models", "ls", "List local models."),
    "inspect": ("dmr.cli.models", "inspect", "Show a model's details as JSON."),
    "show": ("dmr.cli.models", "show", "Show a model's information."),
    "purge": ("dmr.cli.models", "purge", "Remove all local models."),
    "search": ("dmr.cli.search", "search", "Search for models on Docker Hub and Hugging Face."),
    "install-plugin": ("dmr.cli.plugin", "install_plugin", "Install dmr as the `docker model` CLI plugin."),
    "package": ("dmr.cli.models", "package", "Package a GGUF or safetensors model as an OCI artifact."),
    "ps": ("dmr.cli.engines", "ps", "List running models."),
    "df": ("dmr.cli.engines", "df", "Show disk usage."),
    "status": ("dmr.cli.engines", "status", "Show whether the model runner is running."),
    "version": ("dmr.cli.engines", "version", "Show client and server versions."),
    "unload": ("dmr.cli.engines", "unload", "Unload running models."),
    "configure": ("dmr.cli.engines", "configure", "Configure a model's runner (or `configure show`)."),
    "logs": ("dmr.cli.engines", "logs", "Show the model runner's log."),
    "requests": ("dmr.cli.engines", "requests", "Show recent requests and responses."),
    "bench": ("dmr.cli.bench", "bench", "Measure tokens/s and time to first token."),
}
#: DMR's alternative names.
ALIASES = {"list": "ls", "stop": "unload", "config": "configure"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd_name = ALIASES.get(cmd_name, cmd_name)
        if cmd_name in COMMANDS:
            module, attr, _ = COMMANDS[cmd_name]
            cmd = getattr(importlib.import_module(module), attr)
            assert isinstance(cmd, click.Command)
            return cmd
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(dmr.__version__, prog_name="dmr")
def cli() -> None:
    """Docker Model Runner as a Python runtime with an in-process llama.cpp core.

    The commands talk to the server at DMR_HOST (or MODEL_RUNNER_HOST; default http://localhost:12434)
    and start `dmr serve` in the background when nothing answers on a local address."""


def main() -> None:
    """Entry point: user mistakes leave as one `Error:` line and a non-zero status, never a traceback."""
    try:
        cli.main(prog_name="dmr", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if os.environ.get("DMR_DEBUG"):
            raise
        msg = str(exc) or type(exc).__name__
        click.echo(f"Error: {msg}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
