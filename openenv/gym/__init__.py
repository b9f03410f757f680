"""Gymnasium adapters (``pip install 'openenv-rl[gym]'``).

- :class:`GymEnv`: one env session as a ``gymnasium.Env``; :func:`make_env` starts one.
- :class:`GymVectorEnv`: an :class:`~openenv.EnvPool` as a ``gymnasium.vector.VectorEnv``,
  with next-step autoreset.
- Spaces come from the JSON Schemas in the server's greeting (:mod:`openenv.gym.spaces`).
- Importing this module registers ``openenv/<name>-v0`` for every env installed under the
  ``openenv.envs`` entry points (``openenv/echo-v0``, ``openenv/coding-v0``); :func:`register`
  adds yours.

::

    import gymnasium
    import openenv.gym

    env = gymnasium.make("openenv/echo-v0")                   # a local server process
    env = gymnasium.make("openenv/echo-v0", launch="docker")  # a container of echo-env:latest
"""

from openenv.gym.env import GymEnv, make_env
from openenv.gym.registration import register, register_installed
from openenv.gym.vector import GymVectorEnv

__all__ = ["GymEnv", "GymVectorEnv", "make_env", "register", "register_installed"]

register_installed()
