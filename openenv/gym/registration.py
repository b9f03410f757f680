"""Gymnasium ids for openenv envs: ``gymnasium.make("openenv/echo-v0")``.

Every env registered under the ``openenv.envs`` entry points (``echo``, ``coding`` here; an
installed env package adds its own) gets the id ``openenv/<name>-v0`` on ``import openenv.gym``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import gymnasium

from openenv.registry import ENTRY_POINT_GROUP

__all__ = ["register", "register_installed"]


def register(env_id: str, env: str, *, max_episode_steps: int | None = None, **kwargs: Any) -> None:
    """Register ``env_id`` for ``gymnasium.make``: a new session of ``env``.

    ``gymnasium.make(env_id)`` starts a local server process; ``gymnasium.make(env_id,
    launch="docker")`` a container of the env's image; ``endpoint=...`` connects to a running
    server (see :func:`openenv.gym.make_env`).

    Args:
        env_id: e.g. ``"myorg/maze-v0"``.
        env: a registered env name or an env package path (imported only when made).
        max_episode_steps: a time limit (Gymnasium's ``TimeLimit`` sets ``truncated``).
        kwargs: more defaults for :func:`openenv.gym.make_env`.
    """
    gymnasium.register(
        id=env_id,
        entry_point="openenv.gym.env:make_env",
        kwargs={"env": env, **kwargs},
        max_episode_steps=max_episode_steps,
    )


def register_installed() -> list[str]:
    """Register ``openenv/<name>-v0`` for every installed env (idempotent); returns the ids."""
    ids = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        env_id = f"openenv/{point.name}-v0"
        if env_id not in gymnasium.registry:
            register(env_id, point.name)
        ids.append(env_id)
    return ids
