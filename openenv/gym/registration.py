"""Gymnasium ids for openenv envs: ``gymnasium.make("openenv/echo-v0")``,
``gymnasium.make("openenv/CartPole-v1")``.

On ``import openenv.gym``:

- every env registered under the ``openenv.envs`` entry points (``echo``, ``coding`` here; an
  installed env package adds its own) gets the id ``openenv/<name>-v0``;
- every Gymnasium id without a namespace registered by then (``CartPole-v1``,
  ``FrozenLake-v1``, ...) gets ``openenv/<id>``: the same env, served in a server of its own
  (:func:`openenv.gym.remote`); :func:`register_remote` adds others (``ALE/Pong-v5`` ->
  ``openenv/ALE-Pong-v5``).

Each id has a ``vector_entry_point``: ``gymnasium.make_vec(id, num_envs=n)`` gives one
:class:`~openenv.gym.GymVectorEnv` over one :class:`~openenv.EnvPool`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import gymnasium

from openenv.registry import ENTRY_POINT_GROUP

__all__ = ["register", "register_installed", "register_remote", "remote_id"]

NAMESPACE = "openenv"


def register(env_id: str, env: str, *, max_episode_steps: int | None = None, **kwargs: Any) -> None:
    """Register ``env_id`` for ``gymnasium.make`` and ``gymnasium.make_vec``: new sessions of
    ``env``.

    ``gymnasium.make(env_id)`` starts a local server process; ``gymnasium.make(env_id,
    launch="docker")`` a container of the env's image; ``endpoint=...`` connects to a running
    server (see :func:`openenv.gym.make_env`). ``gymnasium.make_vec(env_id, num_envs=n)``
    gives one :class:`~openenv.gym.GymVectorEnv` over one pool.

    Args:
        env_id: e.g. ``"myorg/maze-v0"``.
        env: a registered env name or an env package path (imported only when made).
        max_episode_steps: a time limit (Gymnasium's ``TimeLimit`` sets ``truncated``).
        kwargs: more defaults for :func:`openenv.gym.make_env`.
    """
    gymnasium.register(
        id=env_id,
        entry_point="openenv.gym.env:make_env",
        vector_entry_point="openenv.gym.vector:vector_env",
        kwargs={"env": env, **kwargs},
        max_episode_steps=max_episode_steps,
    )


def remote_id(gym_id: str) -> str:
    """The openenv id of a served Gymnasium id: ``CartPole-v1`` -> ``openenv/CartPole-v1``,
    ``ALE/Pong-v5`` -> ``openenv/ALE-Pong-v5``."""
    return f"{NAMESPACE}/{gym_id.replace('/', '-')}"


def register_remote(gym_id: str, env_id: str | None = None, **make_kwargs: Any) -> str:
    """Register ``env_id`` (default :func:`remote_id`) as the Gymnasium env ``gym_id`` served
    in a server of its own; returns the id. ``gymnasium.make(id, provider="docker",
    **make_kwargs)`` takes :func:`openenv.gym.remote`'s arguments."""
    env_id = env_id or remote_id(gym_id)
    # No max_episode_steps here: the served env applies its own time limit server-side.
    gymnasium.register(
        id=env_id,
        entry_point="openenv.gym.remote:remote",
        vector_entry_point="openenv.gym.vector:remote_vector_env",
        kwargs={"env_id": gym_id, **make_kwargs},
        disable_env_checker=True,  # the served env checks itself; check_env works here too
    )
    return env_id


def register_installed() -> list[str]:
    """Register the ids above (idempotent); returns them."""
    ids = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        env_id = f"{NAMESPACE}/{point.name}-v0"
        if env_id not in gymnasium.registry:
            register(env_id, point.name)
        ids.append(env_id)
    for gym_id, spec in list(gymnasium.registry.items()):
        if spec.namespace is None and remote_id(gym_id) not in gymnasium.registry:
            ids.append(register_remote(gym_id))
    return ids
