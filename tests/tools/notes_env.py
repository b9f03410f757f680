"""A tool env for the tests: a notebook the agent writes and reads through tools, and a task
(write the note "answer" with the right text, then ``submit``) whose reward comes from the env."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

import msgspec

from openenv.server import Environment, create_app, tool
from openenv.types import Action, Observation, State

__all__ = [
    "BlockingNotesEnvironment",
    "NotesAction",
    "NotesEnvironment",
    "NotesObservation",
    "ProcessNotesEnvironment",
    "app",
]


class NotesAction(Action):
    """A plain step: append ``text`` to the note ``scratch``."""

    text: str


class NotesObservation(Observation):
    notes: int = 0
    verdict: str = ""


class Stat(msgspec.Struct):
    path: str
    size: int


class NotesEnvironment(Environment[NotesAction, NotesObservation, State]):
    """Notes written and read through tools."""

    name = "notes_env"

    def __init__(self) -> None:
        self._state = State()
        self._notes: dict[str, str] = {}
        self.threads: set[str] = set()

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> NotesObservation:
        self._state = State(episode_id=episode_id or uuid.uuid4().hex)
        self._notes = {}
        return NotesObservation()

    def step(self, action: NotesAction) -> NotesObservation:
        self._state.step_count += 1
        self._notes["scratch"] = self._notes.get("scratch", "") + action.text
        return NotesObservation(notes=len(self._notes))

    @property
    def state(self) -> State:
        return self._state

    @tool
    def write(self, path: str, text: str, append: bool = False) -> Stat:
        """Write a note.

        Args:
            path: the note's name.
            text: what to write; with
                ``append``, added at its end.
            append: keep what the note held.
        """
        self._state.step_count += 1
        self.threads.add(threading.current_thread().name)
        self._notes[path] = (self._notes.get(path, "") if append else "") + text
        return Stat(path=path, size=len(self._notes[path]))

    @tool
    def read(self, path: str) -> str:
        """Read a note.

        Args:
            path: the note's name.

        Raises:
            FileNotFoundError: no such note.
        """
        self._state.step_count += 1
        if path not in self._notes:
            raise FileNotFoundError(f"no note {path!r}")
        return self._notes[path]

    @tool(name="list", description="The names of all notes.")
    async def list_notes(self, delay: float = 0.0) -> list[str]:
        await asyncio.sleep(delay)
        return sorted(self._notes)

    @tool
    def submit(self) -> NotesObservation:
        """Submit: the episode ends, rewarded 1.0 when the note "answer" says 42."""
        self._state.step_count += 1
        right = self._notes.get("answer") == "42"
        return NotesObservation(
            notes=len(self._notes),
            verdict="right" if right else "wrong",
            reward=1.0 if right else 0.0,
            done=True,
        )


class BlockingNotesEnvironment(NotesEnvironment):
    """The same tools, run on the session's own thread."""

    name = "blocking_notes_env"
    blocking = True


class ProcessNotesEnvironment(NotesEnvironment):
    """The same tools, and one more naming the server process (for fresh-server tests)."""

    name = "process_notes_env"

    @tool
    def server_pid(self) -> int:
        """The process id of the server this session lives in."""
        return os.getpid()


app = create_app(ProcessNotesEnvironment)  # served by subprocesses as tests.tools.notes_env:app
