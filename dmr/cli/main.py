"""`dmr`: a click group whose subcommands live one per module and are imported only when run."""

from __future__ import annotations

import importlib

import click

import dmr

#: command name -> (module, attribute, one-line help shown by `dmr --help` without importing it)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("dmr.cli.serve", "serve", "Run the Docker Model Runner compatible HTTP server."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
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
def main() -> None:
    """Docker Model Runner as a Python runtime with an in-process llama.cpp core."""


if __name__ == "__main__":
    main()
