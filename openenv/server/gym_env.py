"""Any registered Gymnasium env served as an openenv env: ``openenv serve gym:CartPole-v1``.

One session is one ``gymnasium.make(env_id, **make_kwargs)``: ``reset(seed, options)`` and
``step(action)`` are Gymnasium's, with ``terminated``, ``truncated`` and ``info`` carried in
:class:`~openenv.gym_wire.GymObservation`. The greeting's (and ``/schema``'s) JSON Schemas
describe the exact observation and action spaces (``openenv.gym_wire``). An action outside the
action space is refused with ``invalid_action`` and the session goes on. A fork deep-copies the
env (ALE envs copy their emulator through ``cloneState``, see :meth:`GymEnvironment.fork`); an
env that cannot be copied answers ``not_supported``.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any, ClassVar, cast

import gymnasium
import numpy as np
from gymnasium import spaces
from starlette.applications import Starlette

from openenv.exceptions import EnvNotFoundError, InvalidActionError
from openenv.gym_wire import GymAction, GymObservation, GymState, restore, typed_for
from openenv.server.app import create_app
from openenv.server.config import ServerConfig
from openenv.server.environment import Environment

__all__ = ["GymEnvironment", "gym_app", "gym_environment"]

#: Packages whose Gymnasium ids register when they are imported (openenv-rl[gym-catalog]).
_CATALOGS = ("ale_py", "minigrid")
_PLAIN = (str, int, float, bool, type(None), np.ndarray, np.generic)


class GymEnvironment(Environment[GymAction, GymObservation, GymState]):
    """One Gymnasium env per session. :func:`gym_environment` makes the subclass for an id."""

    env_id: ClassVar[str] = ""
    make_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        # Made at the first reset, not here: a server makes a session's env as the session
        # opens, on its event loop, and many sessions opening at once (a pool of Atari envs)
        # would otherwise stall every handshake behind the others' ROM loads.
        self._env: gymnasium.Env[Any, Any] | None = None
        self._state = GymState(env_id=self.env_id)
        self._observation = cast(type[GymObservation], self.observation_type)

    @property
    def env(self) -> gymnasium.Env[Any, Any]:
        """The Gymnasium env (made on first use)."""
        if self._env is None:
            self._env = gymnasium.make(self.env_id, **self.make_kwargs)
        return self._env

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> GymObservation:
        observation, info = self.env.reset(seed=seed, options=options or None)
        self._state = GymState(
            episode_id=episode_id or uuid.uuid4().hex, step_count=0, env_id=self.env_id
        )
        return self._observation(observation=observation, info=_plain(info))

    def step(self, action: GymAction) -> GymObservation:
        space = self.env.action_space
        value = restore(space, action.action)
        if not space.contains(value):
            raise InvalidActionError(_not_in_space(value, space))
        observation, reward, terminated, truncated, info = self.env.step(value)
        self._state.step_count += 1
        terminated, truncated = bool(terminated), bool(truncated)
        return self._observation(
            observation=observation,
            reward=float(reward),
            done=terminated or truncated,
            terminated=terminated,
            truncated=truncated,
            info=_plain(info),
        )

    @property
    def state(self) -> GymState:
        return self._state

    def fork(self) -> GymEnvironment:
        """A deep copy; an ALE env's emulator (which a deep copy starts afresh) then takes the
        original's state (``cloneState``/``restoreState``). That state leaves out the generator
        of sticky actions (ale-py 0.12): with ``repeat_action_probability > 0`` a fork's later
        sticky repeats differ from its parent's."""
        copy = super().fork()
        assert isinstance(copy, GymEnvironment)
        atari = self.env.unwrapped
        if hasattr(atari, "ale") and hasattr(atari, "clone_state"):
            copy.env.unwrapped.restore_state(atari.clone_state(include_rng=True))  # type: ignore[attr-defined]
        return copy

    def close(self) -> None:
        if self._env is not None:
            self._env.close()


def gym_environment(env_id: str, make_kwargs: dict[str, Any] | None = None) -> type[GymEnvironment]:
    """The :class:`GymEnvironment` subclass serving ``env_id``; its schemas carry its spaces.

    ``env_id`` is any registered id (``CartPole-v1``, ``ALE/Pong-v5``, ``module:Id-v0``).
    The env is made once here, to read its spaces.

    Raises:
        EnvNotFoundError: no such id, or its package is not installed.
    """
    kwargs = dict(make_kwargs or {})
    _load_catalogs(env_id)
    try:
        probe = gymnasium.make(env_id, **kwargs)
    except gymnasium.error.Error as exc:
        raise EnvNotFoundError(
            f"no Gymnasium env {env_id!r}: {exc} (Atari and MiniGrid ids need "
            "pip install 'openenv-rl[gym-catalog]')"
        ) from None
    except TypeError as exc:  # keyword arguments the env does not take
        raise EnvNotFoundError(f"gymnasium.make({env_id!r}, **{kwargs!r}): {exc}") from None
    try:
        action_type, observation_type = typed_for(probe.action_space, probe.observation_space)
    finally:
        probe.close()
    cls: type[GymEnvironment] = type(
        f"Gym[{env_id}]",
        (GymEnvironment,),
        {"env_id": env_id, "make_kwargs": kwargs, "name": f"gym:{env_id}"},
    )
    # After class creation: the generic arguments declared the base types, these refine them.
    cls.action_type = action_type
    cls.observation_type = observation_type
    return cls


def gym_app(
    env_id: str, make_kwargs: dict[str, Any] | None = None, *, config: ServerConfig | None = None
) -> Starlette:
    """The app serving the Gymnasium env ``env_id`` (see :func:`gym_environment`)."""
    return create_app(gym_environment(env_id, make_kwargs), config=config)


def _load_catalogs(env_id: str) -> None:
    """Register the ids of the installed catalog packages (Atari, MiniGrid), which Gymnasium
    knows only once they are imported; ``module:Id`` names its module itself."""
    if ":" in env_id or env_id in gymnasium.registry:
        return
    for package in _CATALOGS:
        try:
            gymnasium.register_envs(importlib.import_module(package))
        except ModuleNotFoundError:
            continue


def _plain(value: Any) -> Any:
    """``value`` with whatever the codec cannot send (arbitrary objects in an info dict) as its
    repr; numbers, strings, numpy values, lists, tuples and dicts of them pass as they are."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return repr(value)


def _not_in_space(value: Any, space: gymnasium.Space[Any], path: str = "action") -> str:
    """Why ``value`` is not in ``space``, down to the first part of a Tuple or Dict that is
    not in its own space."""
    parts: list[tuple[str, Any, gymnasium.Space[Any]]] = []
    if isinstance(space, spaces.Tuple) and isinstance(value, tuple):
        if len(value) == len(space.spaces):
            parts = [
                (f"[{i}]", v, s) for i, (v, s) in enumerate(zip(value, space.spaces, strict=True))
            ]
    elif isinstance(space, spaces.Dict) and isinstance(value, dict):
        if value.keys() == space.spaces.keys():
            parts = [(f"[{k!r}]", value[k], s) for k, s in space.spaces.items()]
    for where, part, part_space in parts:
        if not part_space.contains(part):
            return _not_in_space(part, part_space, path + where)
    not_in = f"is not in the action space {space}"
    if not isinstance(value, np.ndarray | np.generic):
        return f"{path} {value!r} ({type(value).__name__}) {not_in}"[:500]
    shape, dtype = getattr(space, "shape", None), getattr(space, "dtype", None)
    if shape is not None and value.shape != shape:
        why = f"its shape must be {shape}"
    elif dtype is not None and not np.can_cast(value.dtype, dtype):
        why = f"its dtype does not cast safely to {dtype}"
    else:
        why = "a value is out of bounds"
    return f"{path}: an array of shape {value.shape} and dtype {value.dtype} {not_in}: {why}"
