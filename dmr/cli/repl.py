"""The interactive chat of `dmr run`: Ollama's REPL commands over DMR's resend-the-history protocol.

Input comes from prompt_toolkit (line editing, history kept across sessions in config.history_path())
when both ends are a terminal, else from plain `input()`. Ctrl-C while an answer streams stops that
answer and drops the unanswered turn; Ctrl-C at the prompt clears the line; Ctrl-D or /bye leaves.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from dmr import config
from dmr.cli.chat_stream import stream_chat
from dmr.cli.client import Client, CliError

HELP = """Available Commands:
  /set system <message>     Set the system message
  /set num_ctx <n>          Set the context size (reloads the model)
  /set parameter <name> <v> Set temperature, top_p, top_k, seed, num_predict, min_p, repeat_penalty
  /set verbose | quiet      Show or hide statistics after each answer
  /show                     Show the conversation settings
  /clear                    Forget the conversation
  /bye, /exit               Exit
  /?, /help                 Help for a command

Use \"\"\" to begin and end a multi-line message.
Ctrl-C stops the current answer; Ctrl-D exits."""

#: Ollama parameter names -> OpenAI request fields.
PARAMETERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "temperature": ("temperature", float),
    "top_p": ("top_p", float),
    "top_k": ("top_k", int),
    "min_p": ("min_p", float),
    "seed": ("seed", int),
    "num_predict": ("max_tokens", int),
    "repeat_penalty": ("repeat_penalty", float),
    "presence_penalty": ("presence_penalty", float),
    "frequency_penalty": ("frequency_penalty", float),
}


class Repl:
    def __init__(self, client: Client, model: str, *, verbose: bool = False, color: bool = False) -> None:
        self.client = client
        self.model = model
        self.verbose = verbose
        self.color = color
        self.system: str | None = None
        self.history: list[dict[str, Any]] = []
        self.params: dict[str, Any] = {}
        self._read = self._make_reader()

    def _make_reader(self) -> Callable[[str], str]:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return input
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        path = config.history_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            history: FileHistory | InMemoryHistory = FileHistory(str(path))
        except OSError:
            history = InMemoryHistory()
        session: PromptSession[str] = PromptSession(history=history)
        return lambda prompt: session.prompt(prompt)

    # --- input ---------------------------------------------------------------------------------------

    def read_message(self) -> str | None:
        """One user message (possibly multi-line); None on Ctrl-D."""
        while True:
            try:
                line = self._read(">>> ")
            except KeyboardInterrupt:
                click.echo("Use Ctrl + d or /bye to exit.")
                continue
            except EOFError:
                return None
            if line.lstrip().startswith('"""'):
                return self._read_multiline(line.lstrip()[3:])
            return line

    def _read_multiline(self, first: str) -> str | None:
        if first.rstrip().endswith('"""'):
            return first.rstrip()[:-3]
        lines = [first] if first else []
        while True:
            try:
                line = self._read("... ")
            except KeyboardInterrupt:
                return ""
            except EOFError:
                return None
            if line.rstrip().endswith('"""'):
                lines.append(line.rstrip()[:-3])
                return "\n".join(lines).strip("\n")
            lines.append(line)

    # --- commands ------------------------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run a /command; False means leave the REPL."""
        words = line.split()
        cmd = words[0].lower()
        if cmd in ("/bye", "/exit"):
            return False
        if cmd in ("/help", "/?"):
            click.echo(HELP)
        elif cmd == "/clear":
            self.history.clear()
            click.echo("Cleared session context")
        elif cmd == "/show":
            click.echo(f"model: {self.model}")
            click.echo(f"system: {self.system or '(none)'}")
            for k, v in self.params.items():
                click.echo(f"{k}: {v}")
        elif cmd == "/set":
            self._set(line.strip()[4:].strip())
        else:
            click.echo(f"Unknown command '{words[0]}'. Type /? for help")
        return True

    def _set(self, rest: str) -> None:
        what, _, value = rest.partition(" ")
        value = value.strip()
        if what == "system" and value:
            self.system = value.strip('"')
            click.echo("Set system message.")
        elif what == "num_ctx" and value.isdigit() and int(value) > 0:
            try:
                self.client.request(
                    "POST", "/engines/_configure", json={"model": self.model, "context-size": int(value)}
                )
            except CliError as exc:
                click.echo(f"Error: {exc.message}")
                return
            click.echo(f"Set parameter 'num_ctx' to '{value}'")
        elif what == "parameter":
            name, _, raw = value.partition(" ")
            if name not in PARAMETERS or not raw.strip():
                click.echo(f"Unknown parameter or missing value; one of: {', '.join(PARAMETERS)}")
                return
            field, conv = PARAMETERS[name]
            try:
                self.params[field] = conv(raw.strip())
            except ValueError:
                click.echo(f"Invalid value for {name}: {raw.strip()}")
                return
            click.echo(f"Set parameter '{name}' to '{raw.strip()}'")
        elif what == "verbose":
            self.verbose = True
            click.echo("Set 'verbose' mode.")
        elif what == "quiet":
            self.verbose = False
            click.echo("Set 'quiet' mode.")
        else:
            click.echo(
                "Usage: /set system <message> | num_ctx <n> | parameter <name> <value> | verbose | quiet"
            )

    # --- loop ----------------------------------------------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def ask(self, text: str) -> None:
        self.history.append({"role": "user", "content": text})
        try:
            ans = stream_chat(self.client, self.model, self.messages(), self.params, color=self.color)
        except CliError as exc:
            self.history.pop()
            click.echo(f"\nError: {exc.message}")
            return
        click.echo()
        if ans.interrupted:
            self.history.pop()  # Ollama drops the unanswered turn too
            click.echo("(interrupted)")
            return
        self.history.append({"role": "assistant", "content": ans.text})
        if self.verbose:
            click.echo(ans.footer())
        click.echo()

    def loop(self) -> None:
        # Ctrl-C must stop an answer even when this process inherited SIGINT ignored: a shell without job
        # control ignores it for background commands, and Python then keeps it ignored (found when the test
        # suite ran in the background: the REPL never saw the key).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        click.echo("Interactive chat mode started. Type '/bye' to exit, '/?' for help.")
        while True:
            text = self.read_message()
            if text is None:
                click.echo()
                return
            if not text.strip():
                continue
            if text.lstrip().startswith("/") and not text.lstrip().startswith("//"):
                if not self.command(text.strip()):
                    return
                continue
            self.ask(text)
