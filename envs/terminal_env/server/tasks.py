"""Tasks: an instruction, files, a set-up script and tests whose result is the reward.

A task directory holds ``task.toml`` (``instruction``, optional ``reward = "exit"`` or
``"pytest"``, ``timeout_s``), and optionally ``files/`` (copied into the workspace),
``setup.sh`` (run in the workspace after the copy, before the first step), ``test.sh``
(reward ``"exit"``: 1.0 when it exits 0, else 0.0) and ``tests/`` (reward ``"pytest"``: the
fraction of its tests that pass). The tests are copied in only when the episode is evaluated,
to a directory outside the workspace (``$TESTS_DIR``); ``solution.sh`` is the reference
solution, which the env never reads (the test suite runs it to prove the task can be solved).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = ["TASKS_DIR", "Task", "load_task", "task_names"]

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"


class Task(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One task, as ``reset(task=...)`` takes it (a name in the task directory, an index into
    it, or this struct's fields as a dict)."""

    name: str = "task"
    instruction: str
    files: dict[str, bytes] = {}
    setup: str = ""
    test: str = ""
    tests: dict[str, bytes] = {}
    reward: Literal["exit", "pytest"] = "exit"
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.reward == "exit" and not self.test:
            raise ValueError(f"task {self.name!r}: reward 'exit' needs a test script")
        if self.reward == "pytest" and not self.tests:
            raise ValueError(f"task {self.name!r}: reward 'pytest' needs tests")
        for path in [*self.files, *self.tests]:
            parts = Path(path).parts
            if not parts or Path(path).is_absolute() or ".." in parts:
                raise ValueError(f"task {self.name!r}: {path!r} is not a relative path")


def task_names(directory: Path = TASKS_DIR) -> list[str]:
    """The tasks in ``directory``, sorted (an index counts in this order)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if (p / "task.toml").is_file())


def _tree(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        return {}
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def load_task(spec: Any, directory: Path = TASKS_DIR) -> Task:
    """The task ``spec`` names: a task name or index in ``directory``, a dict of
    :class:`Task` fields, or a :class:`Task`.

    Raises:
        ValueError: no such task, or a malformed one.
    """
    if isinstance(spec, Task):
        return spec
    if isinstance(spec, dict):
        try:
            return msgspec.convert(spec, Task)
        except msgspec.ValidationError as exc:
            raise ValueError(f"not a task: {exc}") from None
    names = task_names(directory)
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not names:
            raise ValueError(f"no tasks in {directory}")
        spec = names[spec % len(names)]
    if not isinstance(spec, str) or spec not in names:
        raise ValueError(f"no task {spec!r} in {directory} (there are: {', '.join(names)})")
    root = directory / spec
    meta = tomllib.loads((root / "task.toml").read_text())
    setup = root / "setup.sh"
    test = root / "test.sh"
    return msgspec.convert(
        {
            **meta,
            "name": spec,
            "files": _tree(root / "files"),
            "setup": setup.read_text() if setup.is_file() else "",
            "test": test.read_text() if test.is_file() else "",
            "tests": _tree(root / "tests"),
        },
        Task,
    )
