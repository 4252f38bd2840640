"""The interactive chat through a pseudo-terminal (pexpect): memory across turns, Ctrl-C, /bye, Ctrl-D.

TERM=dumb makes prompt_toolkit draw `>>> ` and echo input as plain text (it still reads keys from the
PTY), so the transcript can be matched without stripping cursor-movement escapes. Greedy sampling
(`/set parameter temperature 0`) makes the tiny model's answers repeatable: "I have a cat named Tom."
... "What is the name of my cat?" is a pair SmolLM2-135M answers with "Tom" only when it has turn 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pexpect

from .conftest import Cli

PROMPT = "\r\n>>> "


def spawn(dmr: Cli, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "dmr.cli.main", "run", "ai/smollm2", *args],
        env={**dmr.env, "TERM": "dumb", "PROMPT_TOOLKIT_NO_CPR": "1"},
        encoding="utf-8",
        timeout=180,
        dimensions=(40, 200),
    )
    child.expect("Interactive chat mode started")
    child.expect(">>> ")
    return child


def say(child: pexpect.spawn, line: str) -> str:
    """Send one line; return what came back before the next prompt (the answer, without the echo)."""
    child.sendline(line)
    child.expect_exact(line)
    child.expect_exact(PROMPT)
    return str(child.before).strip()


def test_conversation_interrupt_and_bye(dmr: Cli) -> None:
    child = spawn(dmr)
    try:
        assert "Set parameter 'temperature'" in say(child, "/set parameter temperature 0")
        say(child, "/set parameter num_predict 40")
        say(child, "I have a cat named Tom.")
        # a turn between the fact and the question (what the tiny model answers to it varies by CPU kernels)
        assert say(child, "What is 2 plus 2?")
        assert "Tom" in say(child, "What is the name of my cat?")

        # Ctrl-C while the answer streams: the answer stops, the chat goes on.
        say(child, "/set parameter num_predict 400")
        child.sendline("Write a long story about dragons.")
        child.expect_exact("Write a long story about dragons.")
        child.expect(r"\w+ \w+ \w+")  # the answer has begun
        time.sleep(0.5)
        child.sendintr()
        child.expect_exact("(interrupted)")
        child.expect_exact(PROMPT)
        say(child, "/set parameter num_predict 20")
        assert say(child, "What is 2 plus 2?")

        # Multi-line input, /help, /set system, /clear (forgets the cat).
        assert "/set system" in say(child, "/help")
        assert "Set system message" in say(child, "/set system You are a helpful assistant.")
        child.sendline('"""Say')
        child.expect_exact("... ")
        child.sendline('hello"""')
        child.expect_exact(PROMPT)
        assert "Cleared" in say(child, "/clear")
        assert "Unknown command" in say(child, "/nonsense")

        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_ctrl_d_exits_and_history_persists(dmr: Cli) -> None:
    child = spawn(dmr)
    try:
        say(child, "/set verbose")
        time.sleep(0.5)  # let prompt_toolkit put the terminal in raw mode; a cooked ^D is swallowed
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    history = Path(dmr.env["DMR_HISTORY"]).read_text()
    assert "/set verbose" in history and "I have a cat named Tom." in history
