"""``openenv --help`` and each command's: plain text (no reST markup), every option explained."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

COMMANDS = ["serve", "build", "bench", "ps", "prune", "init", "validate"]


def help_of(*command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "openenv", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def undocumented(text: str) -> list[str]:
    """Options listed with no help: nothing after the flag, nor on the next line."""
    lines = text.split("options:\n", 1)[1].splitlines()
    missing = []
    for index, line in enumerate(lines):
        if not line.startswith("  -"):
            continue
        follows = lines[index + 1] if index + 1 < len(lines) else ""
        if not re.search(r"\S {2,}\S", line.strip()) and not follows.startswith(" " * 10):
            missing.append(line.strip())
    return missing


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_is_plain_text(command: str) -> None:
    text = help_of(*filter(None, [command]))
    assert not re.search(r"``|:(class|func|meth|mod|data):`", text), text


@pytest.mark.parametrize("command", ["bench", "serve"])
def test_every_option_has_help(command: str) -> None:
    assert undocumented(help_of(command)) == []


def test_the_check_sees_an_option_without_help() -> None:
    assert undocumented("options:\n  --sessions SESSIONS\n  --x X       does x\n") == [
        "--sessions SESSIONS"
    ]
