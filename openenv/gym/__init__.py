"""Gymnasium adapters (``pip install 'openenv-rl[gym]'``).

- :func:`remote`: any Gymnasium env (``"CartPole-v1"``, ``"ALE/Pong-v5"``), served isolated in
  a process or container of its own, as a ``gymnasium.Env`` (:class:`RemoteEnv`).
- :class:`GymEnv`: one session of an openenv env as a ``gymnasium.Env``; :func:`make_env`
  starts one.
- :class:`GymVectorEnv`: an :class:`~openenv.EnvPool` as a ``gymnasium.vector.VectorEnv``,
  with next-step autoreset.
- Importing this module registers ``openenv/<name>-v0`` for every env installed under the
  ``openenv.envs`` entry points (``openenv/echo-v0``), and ``openenv/<id>`` for Gymnasium's own
  ids (``openenv/CartPole-v1``); :func:`register` and :func:`register_remote` add yours. Each
  has a ``vector_entry_point``: ``gymnasium.make_vec`` builds one pool.

::

    import gymnasium
    import openenv.gym

    env = openenv.gym.remote("CartPole-v1")                   # a local server process
    env = gymnasium.make("openenv/CartPole-v1")               # the same
    envs = gymnasium.make_vec("openenv/CartPole-v1", 8)       # 8 sessions, one pool
    env = gymnasium.make("openenv/echo-v0", launch="docker")  # a container of echo-env:latest
"""

from openenv.gym.env import GymEnv, make_env
from openenv.gym.registration import register, register_installed, register_remote
from openenv.gym.remote import GymClient, RemoteEnv, gym_provider, remote
from openenv.gym.vector import GymVectorEnv

__all__ = [
    "GymClient",
    "GymEnv",
    "GymVectorEnv",
    "RemoteEnv",
    "gym_provider",
    "make_env",
    "register",
    "register_installed",
    "register_remote",
    "remote",
]

register_installed()
