"""Gymnasium ids for openenv envs: ``gymnasium.make("openenv/echo-v0")``."""

from __future__ import annotations

from typing import Any

import gymnasium

__all__ = ["BUILTIN", "register", "register_builtin"]

#: The ids registered on ``import openenv.gym``: id -> (client, image).
BUILTIN = {
    "openenv/echo-v0": ("envs.echo_env:EchoEnv", "echo-env:latest"),
    "openenv/coding-v0": ("envs.coding_env:CodingEnv", "coding-env:latest"),
}


def register(
    env_id: str,
    client: str,
    *,
    image: str | None = None,
    max_episode_steps: int | None = None,
    **kwargs: Any,
) -> None:
    """Register ``env_id`` for ``gymnasium.make``: a new session of ``client``'s env.

    ``gymnasium.make(env_id)`` starts a local server process; ``gymnasium.make(env_id,
    launch="docker")`` a container of ``image``; ``endpoint=...`` connects to a running server.

    Args:
        env_id: e.g. ``"myorg/maze-v0"``.
        client: the env's sync client as ``"module:Name"`` (imported only when made).
        image: the image ``launch="docker"`` runs.
        max_episode_steps: a time limit (Gymnasium's ``TimeLimit`` sets ``truncated``).
        kwargs: more defaults for :func:`openenv.gym.make_env`.
    """
    gymnasium.register(
        id=env_id,
        entry_point="openenv.gym.env:make_env",
        kwargs={"client": client, "image": image, **kwargs},
        max_episode_steps=max_episode_steps,
        disable_env_checker=False,
    )


def register_builtin() -> None:
    """Register :data:`BUILTIN` (idempotent)."""
    for env_id, (client, image) in BUILTIN.items():
        if env_id not in gymnasium.registry:
            register(env_id, client, image=image)
