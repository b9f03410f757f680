"""The values an environment exchanges with its clients.

Environment authors subclass these msgspec Structs to declare their own action, observation and
state types. The base fields are keyword-only, so a subclass may add required fields::

    class EchoAction(Action):
        message: str

Every field added later must carry a default, so old peers keep decoding new messages.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

__all__ = ["Action", "Observation", "State", "StepResult"]


class Action(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base class of what an agent sends to ``step``."""

    metadata: dict[str, Any] = {}


class Observation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base class of what ``reset`` and ``step`` return; it carries the reward and the done flag."""

    reward: float | None = None
    done: bool = False
    metadata: dict[str, Any] = {}


class State(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base class of the episode bookkeeping returned by ``state``."""

    episode_id: str | None = None
    step_count: int = 0


ObsT = TypeVar("ObsT", bound=Observation)


class StepResult(msgspec.Struct, Generic[ObsT]):
    """What a client's ``reset`` and ``step`` return: the observation, its reward and done flag."""

    observation: ObsT
    reward: float | None = None
    done: bool = False
