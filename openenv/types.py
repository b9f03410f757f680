"""The values an environment exchanges with its clients.

Environment authors subclass these msgspec Structs to declare their own action, observation and
state types. The base fields are keyword-only, so a subclass may add required fields::

    class EchoAction(Action):
        message: str

Every field added later must carry a default, so old peers keep decoding new messages.

An env's three types are declared once, as the generic arguments of its server class and its
clients (``Environment[EchoAction, EchoObservation, State]``); :func:`declare_types` reads them
and sets ``action_type``, ``observation_type`` and ``state_type`` from them.
"""

from __future__ import annotations

import typing
from typing import Any, Generic, TypeVar

import msgspec

__all__ = [
    "Action",
    "GenericObservation",
    "GenericState",
    "Observation",
    "State",
    "StepResult",
    "declare_types",
]


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


class GenericObservation(Observation, dict=True):
    """What a generic client (one declared with the base ``Observation``) decodes an
    observation into: the base fields, and every other field the env sent as an attribute
    (``observation.echoed_message``), so nothing an unknown env sends is lost."""

    @classmethod
    def of(cls, fields: dict[str, Any]) -> GenericObservation:
        """The observation holding ``fields``."""
        return _generic(cls, fields)

    def fields(self) -> dict[str, Any]:
        """Every field, the base ones and the env's own."""
        return {**msgspec.structs.asdict(self), **self.__dict__}


class GenericState(State, dict=True):
    """A generic client's state: the base fields, and the env's own as attributes."""

    @classmethod
    def of(cls, fields: dict[str, Any]) -> GenericState:
        """The state holding ``fields``."""
        return _generic(cls, fields)

    def fields(self) -> dict[str, Any]:
        """Every field, the base ones and the env's own."""
        return {**msgspec.structs.asdict(self), **self.__dict__}


GenericT = TypeVar("GenericT", GenericObservation, GenericState)


def _generic(cls: type[GenericT], fields: dict[str, Any]) -> GenericT:
    known = cls.__struct_fields__
    value = msgspec.convert({k: v for k, v in fields.items() if k in known}, cls)
    for name, item in fields.items():
        if name not in known and name.isidentifier():
            setattr(value, name, item)
    return value


ObsT = TypeVar("ObsT", bound=Observation)


class StepResult(msgspec.Struct, Generic[ObsT]):
    """What a client's ``reset`` and ``step`` return: the observation, with its reward and done
    flag also readable here (``result.reward`` is ``result.observation.reward``)."""

    observation: ObsT

    @property
    def reward(self) -> float | None:
        """The step's reward (None when the env gives none)."""
        return self.observation.reward

    @property
    def done(self) -> bool:
        """Whether the episode ended with this step."""
        return self.observation.done


_BOUNDS = (Action, Observation, State)
_ATTRIBUTES = ("action_type", "observation_type", "state_type")


def declare_types(cls: type[Any], generic_base: type[Any]) -> None:
    """Set ``cls.action_type`` / ``observation_type`` / ``state_type`` from the arguments
    ``cls`` (or its nearest parameterized ancestor) gave ``generic_base``.

    Called from ``__init_subclass__`` of the env server base class and of the clients, so that
    ``class EchoEnvironment(Environment[EchoAction, EchoObservation, State])`` is the whole
    declaration. A class that leaves the arguments open (a generic intermediate base) keeps what
    it inherits.

    Raises:
        TypeError: an argument is not a subclass of Action, Observation and State in turn, or an
            attribute set by hand disagrees with the generic arguments.
    """
    arguments = _generic_arguments(cls, generic_base)
    if arguments is None:
        return
    for attribute, bound, argument in zip(_ATTRIBUTES, _BOUNDS, arguments, strict=True):
        if not (isinstance(argument, type) and issubclass(argument, bound)):
            raise TypeError(
                f"{cls.__name__}: {generic_base.__name__}[...] wants a subclass of "
                f"{bound.__name__} in this place, got {argument!r}"
            )
        explicit = cls.__dict__.get(attribute)
        if explicit is not None and explicit is not argument:
            raise TypeError(
                f"{cls.__name__}.{attribute} = {explicit.__name__} disagrees with its generic "
                f"argument {argument.__name__}: declare the type once, as the generic argument"
            )
        setattr(cls, attribute, argument)


def _generic_arguments(cls: type[Any], generic_base: type[Any]) -> tuple[Any, ...] | None:
    for base in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(base)
        if isinstance(origin, type) and issubclass(origin, generic_base):
            arguments = typing.get_args(base)
            if any(isinstance(a, TypeVar) for a in arguments):
                return None
            return arguments
    return None
