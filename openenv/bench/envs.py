"""Which env the bench drives: any env package, found by module path or registered name.

An env package (``envs.echo_env``) exports its :class:`~openenv.launch.AsyncEnv` subclass; the
bench serves the package with ``openenv serve``, runs its image ``<name-with-dashes>:latest``
under Docker, and steps it with a sample action: the package's ``sample_action(size)`` when it
defines one, else an action whose required fields are filled by type (strings ``size`` long).

Names are resolved through the ``openenv.envs`` entry-point group, so an installed env package
registers itself (``echo = "envs.echo_env"`` in this project's ``pyproject.toml``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import msgspec

from openenv.exceptions import EnvNotFoundError
from openenv.launch.envs import AsyncEnv
from openenv.registry import import_env_module, module_path
from openenv.types import Action

__all__ = ["EnvSpec", "resolve_env"]


@dataclass(frozen=True)
class EnvSpec:
    """How the bench drives one env.

    Attributes:
        name: as given on the command line.
        app: what ``openenv serve`` serves (the env package).
        client: the env's async client class.
        image: its Docker image.
    """

    name: str
    app: str
    client: type[AsyncEnv[Any, Any, Any]]
    image: str
    module: ModuleType

    def action(self, size: int) -> Action:
        """A sample action about ``size`` bytes large."""
        sample = getattr(self.module, "sample_action", None)
        if sample is not None:
            action: Action = sample(size)
            return action
        return default_action(self.client.action_type, size)


def resolve_env(name: str) -> EnvSpec:
    """The env registered as ``name``, or the env package at module path ``name``.

    Raises:
        EnvNotFoundError: nothing is registered under that name and no such package exports
            an ``AsyncEnv`` subclass.
    """
    app = module_path(name)
    module = import_env_module(name)
    clients = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, AsyncEnv) and value.server_app
    ]
    if len(clients) != 1:
        raise EnvNotFoundError(
            f"{app} must export exactly one AsyncEnv subclass with a server_app, "
            f"found {len(clients)}"
        )
    image = f"{app.rsplit('.', 1)[-1].replace('_', '-')}:latest"
    return EnvSpec(name, app, clients[0], image, module)


def default_action(action_type: type[Action], size: int) -> Action:
    """An ``action_type`` whose required fields hold plain values of their declared types."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(action_type)
    for field in msgspec.structs.fields(action_type):
        if field.required:
            values[field.name] = _placeholder(hints[field.name], size)
    return msgspec.convert(values, action_type)


def _placeholder(annotation: Any, size: int) -> Any:
    origin = typing.get_origin(annotation) or annotation
    if origin is str:
        return "x" * size
    if origin is bool:
        return False
    if origin in (int, float):
        return 0
    if origin in (list, tuple, set, frozenset):
        return []
    if origin is dict:
        return {}
    for option in typing.get_args(annotation):  # unions: the first member we can fill
        if option is not type(None):
            return _placeholder(option, size)
    raise ValueError(f"cannot make a sample value of {annotation!r}; define sample_action(size)")
