"""Any Gymnasium env, served isolated (its own process or container), as a ``gymnasium.Env``.

::

    import openenv.gym

    env = openenv.gym.remote("CartPole-v1")                     # a local server process
    env = openenv.gym.remote("ALE/Pong-v5", provider="docker")  # a container of gym-env:latest

The server is ``openenv serve gym:<id>`` (``openenv.server.gym_env``); the spaces come from its
greeting and equal the served env's; observations and infos arrive as the env made them
(arrays of their own dtype and shape, each a view of the received frame, not a copy).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import gymnasium

from openenv.exceptions import EnvMismatchError
from openenv.gym_wire import GymAction, GymObservation, GymState, restore, spaces_of_schemas
from openenv.launch import AsyncEnv, Env
from openenv.protocol import Hello
from openenv.providers.base import Provider
from openenv.registry import image_name
from openenv.types import StepResult

__all__ = [
    "GYM_IMAGE",
    "AsyncGymClient",
    "GymClient",
    "GymWire",
    "RemoteEnv",
    "gym_provider",
    "remote",
]

#: The image ``provider="docker"`` runs (``envs/gym_env``): one container serves the id it is
#: started with.
GYM_IMAGE = image_name("envs/gym_env")


class AsyncGymClient(AsyncEnv[GymAction, GymObservation, GymState]):
    """Async client of a served Gymnasium env (``openenv serve gym:<id>``).

    Its ``connect_timeout`` defaults to 60 s: a server makes each session's env
    (``gymnasium.make``, e.g. loading an Atari ROM) as the session opens, one after another, so
    the last of many sessions opened at once (a pool) waits for all the others'.
    """

    def __init__(self, *args: Any, connect_timeout: float = 60.0, **kwargs: Any) -> None:
        super().__init__(*args, connect_timeout=connect_timeout, **kwargs)


class GymClient(Env[GymAction, GymObservation, GymState]):
    """Sync client of a served Gymnasium env."""

    async_client = AsyncGymClient


def gym_provider(
    env_id: str,
    provider: Provider | Literal["process", "docker"] | None = None,
    **make_kwargs: Any,
) -> Provider:
    """The provider of servers of the Gymnasium env ``env_id``.

    Args:
        env_id: a registered Gymnasium id (``"CartPole-v1"``, ``"ALE/Pong-v5"``).
        provider: None or ``"process"`` for local server processes, ``"docker"`` for
            containers of :data:`GYM_IMAGE`, or a provider of your own (returned as it is;
            its servers must serve ``gym:<env_id>``).
        make_kwargs: keyword arguments of ``gymnasium.make`` on the server (JSON values).
    """
    if provider is not None and not isinstance(provider, str):
        return provider
    env = {"OPENENV_KWARGS": json.dumps(make_kwargs)} if make_kwargs else {}
    if provider in (None, "process"):
        from openenv.providers.process import LocalProcessProvider

        return LocalProcessProvider(f"gym:{env_id}", env=env)
    if provider == "docker":
        from openenv.providers.docker import LocalDockerProvider

        return LocalDockerProvider(GYM_IMAGE, env={"OPENENV_APP": f"gym:{env_id}", **env})
    raise ValueError(f"provider must be 'process', 'docker' or a Provider, not {provider!r}")


class GymWire:
    """How one served Gymnasium env's values cross: its spaces, actions out, results in.

    Raises:
        EnvMismatchError: the server serves another env than ``env_id`` (or no Gymnasium env).
    """

    def __init__(self, hello: Hello, env_id: str | None = None) -> None:
        if env_id is not None and hello.env != f"gym:{env_id}":
            raise EnvMismatchError(
                f"expected a server of gym:{env_id}, but it serves {hello.env}",
                expected=f"gym:{env_id}",
                actual=hello.env,
                server_env=hello.env,
            )
        try:
            self.action_space, self.observation_space = spaces_of_schemas(
                hello.action_schema, hello.observation_schema
            )
        except ValueError as exc:
            raise EnvMismatchError(
                f"{hello.env} is not a served Gymnasium env: {exc}",
                expected="gym:*",
                actual=hello.env,
                server_env=hello.env,
            ) from None

    def action(self, value: Any) -> GymAction:
        return GymAction(action=value)

    def observation(self, result: StepResult[GymObservation]) -> Any:
        return restore(self.observation_space, result.observation.observation)

    def info(self, result: StepResult[GymObservation]) -> dict[str, Any]:
        return result.observation.info

    def flags(self, result: StepResult[GymObservation]) -> tuple[bool, bool]:
        observation = result.observation
        return observation.terminated, observation.truncated


class RemoteEnv(gymnasium.Env[Any, Any]):
    """A served Gymnasium env behind Gymnasium's own API.

    ``reset(seed=, options=)`` and ``step(action)`` are the served env's, as it returns them.
    :meth:`fork` opens a copy of the env in its current state (``NotSupportedError`` for envs
    that cannot be copied). ``close`` ends the session and stops the server it started.

    Args:
        client: a sync :class:`GymClient`, connected here if it is not.
        env_id: the id the server must serve (checked at once); None checks nothing.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, client: GymClient, env_id: str | None = None) -> None:
        self.client = client
        try:
            self.wire = GymWire(client.hello or client.connect(), env_id)
        except BaseException:
            client.close()  # it may own a server: stop it
            raise
        self.env_id = env_id
        self.observation_space = self.wire.observation_space
        self.action_space = self.wire.action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        result = self.client.reset(seed=seed, **(options or {}))
        return self.wire.observation(result), self.wire.info(result)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        result = self.client.step(GymAction(action=action))
        terminated, truncated = self.wire.flags(result)
        reward = result.observation.reward or 0.0
        return self.wire.observation(result), reward, terminated, truncated, self.wire.info(result)

    def fork(self) -> RemoteEnv:
        """A new env whose server-side env is a copy of this one's as it is now.

        Raises:
            NotSupportedError: the served env cannot be copied.
        """
        return RemoteEnv(self.client.fork(), self.env_id)

    def close(self) -> None:
        if not self.client.closed:
            self.client.close()


def remote(
    env_id: str,
    provider: Provider | Literal["process", "docker"] | None = None,
    **make_kwargs: Any,
) -> RemoteEnv:
    """The Gymnasium env ``env_id`` served in a server of its own; see :func:`gym_provider`
    for ``provider`` and ``make_kwargs`` (``gymnasium.make``'s keyword arguments)."""
    source = gym_provider(env_id, provider, **make_kwargs)
    return RemoteEnv(GymClient.from_provider(source), env_id)
