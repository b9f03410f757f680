"""``openenv init``: a new env package from the templates in ``templates/``.

Templates are package data (they ship in the wheel). A file ``X.tmpl`` becomes ``X``; ``BASE``
in a file name becomes the env's base name (``demo`` for ``demo_env``); ``{{key}}`` in a file
becomes one of :func:`names`. The package is written to a temporary directory beside its
destination and renamed into place, so a failure leaves nothing half-made.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from openenv.exceptions import OpenEnvError
from openenv.registry import image_name

__all__ = ["ScaffoldError", "check_name", "names", "scaffold"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_TAKEN = {"openenv", "envs", "tests", "test"}


class ScaffoldError(OpenEnvError):
    """``openenv init`` cannot create the package: a bad name, or the path is taken."""


def check_name(name: str) -> None:
    """Refuse names that are not lowercase identifiers or that would shadow a module.

    Raises:
        ScaffoldError: with one line saying why.
    """
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"{name!r} is not a valid env name: use a lowercase Python identifier such as "
            "demo_env (letters, digits, underscores; it names a package and an image)"
        )
    if name in sys.stdlib_module_names or name in _TAKEN:
        raise ScaffoldError(f"{name!r} would shadow the Python module of that name; choose another")


def names(name: str) -> dict[str, str]:
    """The template variables: ``demo_env`` -> name ``demo_env``, base ``demo``, Base ``Demo``,
    image ``demo-env:latest``."""
    base = name.removesuffix("_env").strip("_") or name
    return {
        "name": name,
        "base": base,
        "Base": "".join(part.capitalize() for part in base.split("_") if part),
        "image": image_name(name),
    }


_TOOLS = {
    "tool_import": ", tool",
    "tools": '''

    # The same game as a tool (openenv init --tools): a model calls guess(number=...); each call
    # is a step, its reward and done flag the step's.

    @tool
    def guess(self, number: int) -> {{Base}}Observation:
        """Guess the secret number; the hint says where it is.

        Args:
            number: the guess, from LOWEST to HIGHEST.
        """
        if not LOWEST <= number <= HIGHEST:
            raise ValueError(f"guess a number from {LOWEST} to {HIGHEST}, not {number}")
        return self.step({{Base}}Action(guess=number))''',
    "tool_test": """


def test_the_game_as_a_tool() -> None:
    with {{Base}}Env.from_process() as env:
        (guess,) = env.list_tools()
        assert guess.name == "guess" and guess.input_schema["required"] == ["number"]
        env.reset(seed=7)
        result = env.call_tool("guess", number=50)
        assert result.observation.result["hint"] in ("higher", "lower", "correct")
        assert env.call_tool("guess", number=1000).observation.error is not None""",
}


def scaffold(name: str, parent: Path, *, tools: bool = False) -> Path:
    """Create the env package ``parent/name`` and return its path; with ``tools``, its env
    also offers its game as a tool (``@tool``), with a test of it.

    Raises:
        ScaffoldError: the name is invalid, ``parent/name`` already exists, or ``parent`` cannot
            be created or written.
    """
    check_name(name)
    target = parent.resolve() / name
    if target.exists():
        raise ScaffoldError(f"{target} already exists; refusing to overwrite it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    except OSError as exc:
        raise ScaffoldError(f"cannot create {target}: {exc.strerror or exc}") from exc
    variables = names(name)
    for key, text in _TOOLS.items():
        variables[key] = _fill(text, variables) if tools else ""
    try:
        _render(resources.files(__package__) / "templates", staging, variables)
        os.rename(staging, target)  # atomic: the package appears whole or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _render(source: Traversable, destination: Path, variables: dict[str, str]) -> None:
    for item in source.iterdir():
        if item.name.startswith(("__pycache__", ".")):
            continue
        name = item.name.replace("BASE", variables["base"]).removesuffix(".tmpl")
        if item.is_dir():
            (destination / name).mkdir()
            _render(item, destination / name, variables)
        else:
            (destination / name).write_text(_fill(item.read_text(), variables))


def _fill(text: str, variables: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return variables[match.group(1)]  # a KeyError here is a template bug

    return _PLACEHOLDER.sub(value, text)
