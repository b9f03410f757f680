"""One live progress line on stderr, for the slow things the CLI and the pool wait on.

On a terminal it is a transient rich bar (or spinner, without a total); elsewhere it prints
each new description as a plain line when ``plain_lines`` is set (build logs in CI), and
nothing otherwise. rich comes with the ``bench`` extra; without it there is no bar.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["Progress"]


class Progress:
    """``with Progress("starting env servers", total=16) as p: ... p.update(completed=3)``.

    Args:
        description: the line's label.
        total: the amount of work (a bar), or None (a spinner with elapsed time).
        enabled: False shows nothing at all.
        show_after: seconds before the bar appears, so quick work shows nothing.
        plain_lines: away from a terminal, print each new description as a line.
    """

    def __init__(
        self,
        description: str,
        *,
        total: float | None = None,
        enabled: bool = True,
        show_after: float = 0.0,
        plain_lines: bool = False,
    ) -> None:
        self._description = description
        self._total = total
        self._show_after = show_after
        self._began = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        terminal = sys.stderr.isatty()
        self._live = enabled and terminal and _has_rich()
        self._plain = enabled and plain_lines and not terminal

    def __enter__(self) -> Progress:
        if self._plain:
            print(self._description, file=sys.stderr, flush=True)
        self._maybe_show()
        return self

    def update(
        self, *, completed: float | None = None, description: str | None = None, info: str = ""
    ) -> None:
        """Move the bar to ``completed``, relabel it, or show ``info`` beside it."""
        if description is not None and description != self._description:
            self._description = description
            if self._plain:
                print(description, file=sys.stderr, flush=True)
        self._maybe_show()
        if self._bar is not None:
            fields: dict[str, Any] = {"description": self._description, "info": info}
            if completed is not None:
                fields["completed"] = completed
            self._bar.update(self._task, **fields)

    def _maybe_show(self) -> None:
        if not self._live or self._bar is not None:
            return
        if time.monotonic() - self._began < self._show_after:
            return
        from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        middle = BarColumn() if self._total is not None else SpinnerColumn()
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            middle,
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            transient=True,
        )
        self._task = self._bar.add_task(self._description, total=self._total, info="")
        self._bar.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
