"""``GymEnv``: one env session as a ``gymnasium.Env``."""

from __future__ import annotations

import importlib
from typing import Any, Literal

import gymnasium
import msgspec

from openenv.client import EnvClient
from openenv.gym.spaces import SpaceMap, action_map, observation_map
from openenv.protocol import Hello
from openenv.types import StepResult

__all__ = ["GymEnv", "client_class", "make_env", "spaces_of"]


def client_class(client: str | type[EnvClient[Any, Any, Any]]) -> type[EnvClient[Any, Any, Any]]:
    """The sync client class ``client`` names (``"envs.echo_env:EchoEnv"``) or is."""
    if isinstance(client, str):
        module, _, name = client.partition(":")
        loaded = getattr(importlib.import_module(module), name)
        if not (isinstance(loaded, type) and issubclass(loaded, EnvClient)):
            raise TypeError(f"{client} is not an EnvClient subclass")
        return loaded
    return client


def spaces_of(hello: Hello, action_type: type[msgspec.Struct]) -> tuple[SpaceMap, SpaceMap]:
    """The (observation, action) space maps of an env, from the JSON Schemas in its server's
    greeting; actions decode into ``action_type``."""
    return observation_map(hello.observation_schema), action_map(hello.action_schema, action_type)


class GymEnv(gymnasium.Env[Any, Any]):
    """An env session behind Gymnasium's API.

    ``reset(seed=, options=)`` returns ``(observation, info)`` and ``step(action)`` returns
    ``(observation, reward, terminated, truncated, info)``: ``terminated`` is the env's
    ``done``; ``truncated`` is never set here (register with ``max_episode_steps`` for a time
    limit). Observations and actions are the dicts of :mod:`openenv.gym.spaces`; ``step`` also
    takes an instance of the env's action type. ``info["observation"]`` is the typed
    observation. ``close`` ends the session (and stops the server the client started).

    Args:
        client: a sync client, e.g. ``EchoEnv.from_process()``; connected here if it is not.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, client: EnvClient[Any, Any, Any]) -> None:
        self.client = client
        hello = client.hello or client.connect()
        action_type = type(client).async_client.action_type
        self._observations, self._actions = spaces_of(hello, action_type)
        self.observation_space = self._observations.space
        self.action_space = self._actions.space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        result = self.client.reset(seed=seed, **(options or {}))
        return self._observation(result), {"observation": result.observation}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        result = self.client.step(self._actions.from_gym(action))
        reward = float(result.reward or 0.0)
        info = {"observation": result.observation}
        return self._observation(result), reward, bool(result.done), False, info

    def close(self) -> None:
        if not self.client.closed:
            self.client.close()

    def _observation(self, result: StepResult[Any]) -> Any:
        return self._observations.to_gym(msgspec.to_builtins(result.observation))


def make_env(
    client: str | type[EnvClient[Any, Any, Any]],
    *,
    launch: Literal["process", "docker"] = "process",
    image: str | None = None,
    endpoint: str | None = None,
    **options: Any,
) -> GymEnv:
    """A :class:`GymEnv` of a new session: the entry point of registered ids.

    Args:
        client: the env's sync client class, or its ``"module:Name"``.
        launch: where its server runs when no ``endpoint`` is given: a local ``"process"``,
            or a ``"docker"`` container of ``image``.
        image: the image to run with ``launch="docker"``.
        endpoint: connect to a server already running instead (``ws://…``, ``unix://…``).
        options: for the provider (``from_process`` / ``from_docker_image``) or, with
            ``endpoint``, for the client.
    """
    cls = client_class(client)
    if endpoint is not None:
        return GymEnv(cls(endpoint, **options))
    if launch == "docker":
        if image is None:
            raise ValueError("launch='docker' needs image=")
        return GymEnv(cls.from_docker_image(image, **options))
    if launch != "process":
        raise ValueError(f"launch must be 'process' or 'docker', not {launch!r}")
    return GymEnv(cls.from_process(**options))
