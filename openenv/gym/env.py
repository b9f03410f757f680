"""``GymEnv``: one env session as a ``gymnasium.Env``."""

from __future__ import annotations

from typing import Any, Literal

import gymnasium
import msgspec

from openenv.client import EnvClient
from openenv.gym.spaces import SpaceMap, action_map, observation_map
from openenv.launch import Env
from openenv.protocol import Hello
from openenv.registry import image_name, resolve
from openenv.types import StepResult

__all__ = ["GymEnv", "env_classes", "make_env", "spaces_of"]


def env_classes(env: str | type[Env[Any, Any, Any]]) -> tuple[type[Env[Any, Any, Any]], str]:
    """The sync client class of ``env`` and the image its containers run.

    ``env`` is a name registered under the ``openenv.envs`` entry points (``"echo"``), an env
    package (``"envs.echo_env"``), or the env's :class:`~openenv.launch.Env` class itself.
    """
    if not isinstance(env, str):
        app = env.async_client.server_app
        return env, resolve(app).image if app else image_name(env.__name__)
    spec = resolve(env)
    client = spec.client()
    for value in vars(spec.import_module()).values():
        if isinstance(value, type) and issubclass(value, Env) and value.async_client is client:
            return value, spec.image
    twin = type(f"{client.__name__}Sync", (Env,), {"async_client": client})
    return twin, spec.image


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
        try:
            hello = client.hello or client.connect()
            action_type = type(client).async_client.action_type
            self._observations, self._actions = spaces_of(hello, action_type)
        except BaseException:
            client.close()  # it may own a server: stop it
            raise
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
    env: str | type[Env[Any, Any, Any]],
    *,
    launch: Literal["process", "docker"] = "process",
    image: str | None = None,
    endpoint: str | None = None,
    **options: Any,
) -> GymEnv:
    """A :class:`GymEnv` of a new session: the entry point of registered ids.

    Args:
        env: a registered env name (``"echo"``), an env package (``"envs.echo_env"``) or the
            env's sync client class (see :func:`env_classes`).
        launch: where its server runs when no ``endpoint`` is given: a local ``"process"``,
            or a ``"docker"`` container of ``image``.
        image: the image to run with ``launch="docker"`` (default: the env's,
            ``<package-name-with-dashes>:latest``).
        endpoint: connect to a server already running instead (``ws://…``, ``unix://…``).
        options: for the provider (``from_process`` / ``from_docker_image``) or, with
            ``endpoint``, for the client.
    """
    cls, default_image = env_classes(env)
    if endpoint is not None:
        return GymEnv(cls(endpoint, **options))
    if launch == "docker":
        return GymEnv(cls.from_docker_image(image or default_image, **options))
    if launch != "process":
        raise ValueError(f"launch must be 'process' or 'docker', not {launch!r}")
    return GymEnv(cls.from_process(**options))
