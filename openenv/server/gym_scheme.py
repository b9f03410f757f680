"""The ``gym:`` scheme of the env registry: ``gym:CartPole-v1`` names the Gymnasium env
``CartPole-v1`` served by ``openenv.server.gym_env`` (``openenv serve gym:ALE/Pong-v5``,
``LocalProcessProvider("gym:CartPole-v1")``, ``OPENENV_APP=gym:<id>`` in the ``gym-env``
image). Registered in ``pyproject.toml`` under ``openenv.env_schemes``.

Kept apart from ``gym_env`` so that resolving a name imports neither Gymnasium nor numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openenv.exceptions import EnvNotFoundError
from openenv.registry import EnvSpec, image_name

__all__ = ["GYM_IMAGE", "GymSpec", "spec_of"]

#: The image that serves any Gymnasium id (``envs/gym_env``; ``make images`` builds it).
GYM_IMAGE = image_name("envs/gym_env")
PREFIX = "gym:"


@dataclass(frozen=True)
class GymSpec(EnvSpec):
    """A served Gymnasium env; ``options`` are ``gymnasium.make``'s keyword arguments."""

    @property
    def env_id(self) -> str:
        """The Gymnasium id."""
        return self.name.removeprefix(PREFIX)

    def load_app(self) -> Any:
        """The app serving :attr:`env_id` (the env is made once here, to read its spaces).

        Raises:
            EnvNotFoundError: no such Gymnasium id, Gymnasium is not installed, or
                ``gymnasium.make`` refused the options.
        """
        try:
            from openenv.server.gym_env import gym_app
        except ImportError as exc:
            raise EnvNotFoundError(
                f"serving {self.name} needs Gymnasium ({exc.name} is missing): "
                "pip install 'openenv-rl[gym]'"
            ) from None
        return gym_app(self.env_id, dict(self.options))

    def client(self) -> type[Any]:
        raise EnvNotFoundError(
            f"{self.name} has no typed client: use openenv.gym.remote({self.env_id!r}), "
            f"openenv.gym.GymClient or openenv.gym.GymVectorEnv({self.name!r}, n)"
        )


def spec_of(env_id: str) -> GymSpec:
    """The spec of the Gymnasium id ``env_id`` (looked up when its app is made)."""
    if not env_id:
        raise EnvNotFoundError("gym: needs a Gymnasium id, e.g. gym:CartPole-v1")
    return GymSpec(name=f"{PREFIX}{env_id}", module="openenv.server.gym_env", image=GYM_IMAGE)
