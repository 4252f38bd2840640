"""`dmr --help` lists the commands without importing the native module or the server."""

from __future__ import annotations

import subprocess
import sys


def test_help_is_lazy() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from dmr.cli.main import cli; "
        "r = CliRunner().invoke(cli, ['--help']); print(r.output); "
        "print('NATIVE' if 'dmr._native' in sys.modules else 'CLEAN'); "
        "print('SERVER' if 'dmr.server.app' in sys.modules else 'NOSERVER')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "serve" in out and "CLEAN" in out and "NOSERVER" in out


def test_serve_help() -> None:
    from click.testing import CliRunner

    from dmr.cli.main import cli

    r = CliRunner().invoke(cli, ["serve", "--help"])
    assert r.exit_code == 0 and "--port" in r.output and "12434" in r.output
