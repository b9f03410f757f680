"""The base class environment authors subclass."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any, ClassVar, Generic, TypeVar

from openenv.server.tools import toolbox
from openenv.types import Action, Observation, State, declare_types

__all__ = ["Environment"]

ActT = TypeVar("ActT", bound=Action)
ObsT = TypeVar("ObsT", bound=Observation)
StateT = TypeVar("StateT", bound=State)


class Environment(ABC, Generic[ActT, ObsT, StateT]):
    """One episode-at-a-time environment; the server creates one instance per session.

    Subclasses name their three types once, as generic arguments
    (``class EchoEnvironment(Environment[EchoAction, EchoObservation, State])``), and implement
    ``reset``, ``step`` and ``state``. ``reset`` and ``step`` may be plain methods or
    ``async def``:

    - cheap sync methods run directly on the event loop (no thread hop per step);
    - set ``blocking = True`` when sync methods do slow or blocking work: they then run on a
      thread of their own per session, so other sessions keep being served;
    - ``async def`` methods are awaited on the loop.

    Methods marked ``@tool`` (``openenv.server.tool``) are offered as tools beside ``step``:
    listed with JSON Schemas from their type hints and called by name, each call a step.

    Sessions can be forked (``await client.fork()``): the server asks the env for a copy of
    itself (:meth:`fork`), which then lives on in a session of its own.

    Attributes:
        name: shown in the server's greeting and ``/info``; defaults to the class name.
        action_type: the Struct ``step`` receives, decoded straight off the wire (set from
            the first generic argument).
        observation_type: the Struct ``reset`` and ``step`` return (the second).
        state_type: the Struct ``state`` returns (the third).
        blocking: run sync ``reset``/``step`` on a per-session worker thread.
        forkable: whether :meth:`fork` may copy the env; False answers every fork request
            with ``not_supported``.
        deterministic: ``reset(seed=s)`` followed by the same actions always gives the same
            observations; ``openenv validate`` checks it when set.
        runs_code: the env runs code its clients send (an interpreter, a shell): whoever
            reaches the server runs code as the server's user, so ``serve`` insists on a token
            even on a unix socket.
    """

    name: ClassVar[str] = ""
    action_type: ClassVar[type[Action]] = Action
    observation_type: ClassVar[type[Observation]] = Observation
    state_type: ClassVar[type[State]] = State
    blocking: ClassVar[bool] = False
    forkable: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    runs_code: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare_types(cls, Environment)
        toolbox(cls)  # a tool declared wrongly fails here, where the class is defined

    @abstractmethod
    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> ObsT | Awaitable[ObsT]:
        """Start a new episode and return its first observation."""

    @abstractmethod
    def step(self, action: ActT) -> ObsT | Awaitable[ObsT]:
        """Apply ``action`` and return the next observation (with its reward and done flag).

        Raise :class:`~openenv.exceptions.InvalidActionError` to refuse an action the type
        admits but the env does not (out of range, wrong shape): the client gets that error
        and the session goes on.
        """

    @property
    @abstractmethod
    def state(self) -> StateT:
        """The episode's bookkeeping: id, step count and anything the env adds."""

    def close(self) -> Awaitable[None] | None:
        """Release what the env holds; called once when its session ends."""
        return None

    def fork(self) -> Environment[ActT, ObsT, StateT] | Awaitable[Environment[ActT, ObsT, StateT]]:
        """An independent copy of this env in its current state, for a forked session.

        The default deep-copies the env. Override it when that is wrong or slow (an env
        holding a process, a socket or a simulator handle copies those its own way), or set
        ``forkable = False``. May be ``async def``; a blocking env's runs on its thread.

        Raises:
            NotImplementedError: the env cannot be copied; the client gets ``not_supported``.
        """
        if not self.forkable:
            raise NotImplementedError(f"{self.env_name()} does not support fork")
        try:
            return copy.deepcopy(self)
        except Exception as exc:  # deepcopy raises TypeError, PicklingError, or the env's own
            raise NotImplementedError(
                f"{self.env_name()} cannot be copied for a fork: {type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def env_name(cls) -> str:
        """The name announced to clients."""
        return cls.name or cls.__name__
