"""``GymVectorEnv``: an :class:`~openenv.EnvPool` as a ``gymnasium.vector.VectorEnv``.

``gymnasium.make_vec("openenv/echo-v0", num_envs=8)`` and
``gymnasium.make_vec("openenv/CartPole-v1", num_envs=8)`` build one of these (the ids'
``vector_entry_point``): one pool, its sessions stepped concurrently from one process.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, Protocol

import gymnasium
import msgspec
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from openenv.client.portal import run_sync
from openenv.gym.env import env_classes, spaces_of
from openenv.gym.remote import AsyncGymClient, GymWire, gym_provider
from openenv.launch import BatchError, Env, EnvPool
from openenv.protocol import Hello
from openenv.providers.base import Provider
from openenv.types import Action, StepResult

__all__ = ["GymVectorEnv", "remote_vector_env", "vector_env"]

GYM_PREFIX = "gym:"


class _Wire(Protocol):
    """How one kind of env's values cross between Gymnasium and the pool's clients."""

    observation_space: gymnasium.Space[Any]
    action_space: gymnasium.Space[Any]

    def action(self, value: Any) -> Action: ...
    def observation(self, result: StepResult[Any]) -> Any: ...
    def info(self, result: StepResult[Any]) -> dict[str, Any]: ...
    def flags(self, result: StepResult[Any]) -> tuple[bool, bool]: ...


class _TypedWire:
    """An openenv env with typed messages: spaces from its JSON Schemas, ``done`` is
    ``terminated``, and ``info["observation"]`` holds the typed observation."""

    def __init__(self, hello: Hello, action_type: type[msgspec.Struct]) -> None:
        self._observations, self._actions = spaces_of(hello, action_type)
        self.observation_space = self._observations.space
        self.action_space = self._actions.space

    def action(self, value: Any) -> Action:
        action: Action = self._actions.from_gym(value)
        return action

    def observation(self, result: StepResult[Any]) -> Any:
        return self._observations.to_gym(msgspec.to_builtins(result.observation))

    def info(self, result: StepResult[Any]) -> dict[str, Any]:
        return {"observation": result.observation}

    def flags(self, result: StepResult[Any]) -> tuple[bool, bool]:
        return result.done, False


class GymVectorEnv(gymnasium.vector.VectorEnv[Any, Any, Any]):
    """``num_envs`` env sessions of one env in one :class:`~openenv.EnvPool`, stepped
    concurrently, with Gymnasium's next-step autoreset
    (``metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP``).

    Once sub-env ``i`` terminates or truncates, the next ``step`` ignores its action and resets
    it: that step returns its first observation, reward 0 and neither flag set.
    ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` (a list gives one seed each).

    Every batch goes through ``pool.reset`` / ``pool.step``: a sub-env whose server died or
    whose connection dropped is replaced by the pool on a live server, and the run goes on. That
    step reports it as truncated, with ``infos["env_replaced"][i]`` true and the fresh env's
    first observation; the next step resets it again like any ended episode (reward 0).

    For an env served from Gymnasium (``"gym:<id>"``) observations, rewards, flags and infos
    are the served env's. For an openenv env with typed messages ``terminated`` is its
    ``done``, ``truncated`` comes from ``max_episode_steps`` and ``infos["observation"]``
    holds the typed observations.

    Args:
        env: ``"gym:<id>"`` for a Gymnasium env, a registered env name (``"echo"``), an env
            package, or its sync client class.
        num_envs: sessions.
        provider: where servers run (default: local processes, all sessions on one server;
            for ``gym:<id>``, see :func:`~openenv.gym.gym_provider`).
        max_episode_steps: truncate episodes after this many steps.
        pool_options: more :class:`~openenv.EnvPool` options (``sessions_per_server``,
            ``timeout``, ...).
    """

    def __init__(
        self,
        env: str | type[Env[Any, Any, Any]],
        num_envs: int,
        *,
        provider: Provider | None = None,
        max_episode_steps: int | None = None,
        **pool_options: Any,
    ) -> None:
        make_wire: Callable[[Hello], _Wire]
        if provider is None:  # local processes: every session on one server unless told
            pool_options.setdefault("sessions_per_server", num_envs)
        if isinstance(env, str) and env.startswith(GYM_PREFIX):
            env_id = env.removeprefix(GYM_PREFIX)
            async_cls: type[Any] = AsyncGymClient
            provider = provider or gym_provider(env_id)
            make_wire = lambda hello: GymWire(hello, env_id)  # noqa: E731
        else:
            async_cls = env_classes(env)[0].async_client
            if provider is None:
                from openenv.providers.process import LocalProcessProvider

                provider = LocalProcessProvider(async_cls._require_app())
            make_wire = lambda hello: _TypedWire(hello, async_cls.action_type)  # noqa: E731
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.pool: EnvPool[Any] = EnvPool(async_cls, provider, num_envs, **pool_options)
        run_sync(self.pool.start())
        try:
            hello = self.pool.envs[0].hello
            assert hello is not None
            self._wire = make_wire(hello)
        except BaseException:
            run_sync(self.pool.close())  # nothing the pool started may outlive a failed init
            raise
        self.single_observation_space = self._wire.observation_space
        self.single_action_space = self._wire.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)
        self._steps = np.zeros(num_envs, dtype=np.int64)

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed if isinstance(seed, int) else None)
        if seed is not None and not isinstance(seed, int) and len(seed) != self.num_envs:
            raise ValueError(f"{len(seed)} seeds for {self.num_envs} envs")
        opts = options or {}
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        results, _ = self._batch(
            lambda: self.pool.reset(seed=seed, **opts),
            lambda i: self.pool.envs[i].reset(seed=seeds[i], **opts),
        )
        self._autoreset[:] = False
        self._steps[:] = 0
        return self._observations(results), self._infos(results)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        resetting = self._autoreset
        per_env = [
            None if resetting[i] else self._wire.action(a)
            for i, a in enumerate(iterate(self.action_space, actions))
        ]
        results, replaced = self._batch(
            lambda: self.pool.step(per_env, reset=resetting.tolist()),
            lambda i: self.pool.envs[i].reset(),
        )
        flags = np.array([self._wire.flags(r) for r in results], dtype=np.bool_).reshape(-1, 2)
        fresh = resetting | replaced
        self._steps = np.where(fresh, 0, self._steps + 1)
        rewards = np.array([r.reward or 0.0 for r in results], dtype=np.float64)
        rewards[fresh] = 0.0
        terminated = flags[:, 0] & ~fresh
        truncated = (flags[:, 1] & ~fresh) | replaced
        if self.max_episode_steps is not None:
            # As Gymnasium's TimeLimit: an episode that ends as time runs out is both.
            truncated |= (self._steps >= self.max_episode_steps) & ~fresh
        self._autoreset = terminated | truncated
        infos = self._infos(results)
        if replaced.any():
            for i in np.flatnonzero(replaced):
                infos = self._add_info(infos, {"env_replaced": True}, int(i))
        return self._observations(results), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        run_sync(self.pool.close())

    def _batch(
        self,
        batch: Callable[[], Coroutine[Any, Any, list[StepResult[Any]]]],
        again: Callable[[int], Coroutine[Any, Any, StepResult[Any]]],
    ) -> tuple[list[StepResult[Any]], np.ndarray[Any, Any]]:
        """Run a pool batch; the envs the pool had to replace are reset with ``again(i)``.
        Returns every env's result and which envs were replaced."""
        replaced = np.zeros(self.num_envs, dtype=np.bool_)
        try:
            return run_sync(batch()), replaced
        except BatchError as error:
            results: list[Any] = list(error.results)
            for i in error.errors:
                results[i] = run_sync(again(i))  # the pool gave slot i a new session
                replaced[i] = True
            return results, replaced

    def _observations(self, results: list[StepResult[Any]]) -> Any:
        items = [self._wire.observation(r) for r in results]
        out: Any = create_empty_array(self.single_observation_space, self.num_envs)
        return concatenate(self.single_observation_space, items, out)

    def _infos(self, results: list[StepResult[Any]]) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        for i, result in enumerate(results):
            info = self._wire.info(result)
            if info:
                infos = self._add_info(infos, info, i)
        return infos


def vector_env(
    num_envs: int,
    env: str,
    *,
    launch: Literal["process", "docker"] = "process",
    image: str | None = None,
    max_episode_steps: int | None = None,
    **pool_options: Any,
) -> GymVectorEnv:
    """The ``vector_entry_point`` of ``openenv/<name>-v0`` ids: one :class:`GymVectorEnv`
    over one pool, on local processes or containers of the env's image."""
    provider: Provider | None = None
    if launch == "docker":
        from openenv.providers.docker import LocalDockerProvider

        provider = LocalDockerProvider(image or env_classes(env)[1])
    elif launch != "process":
        raise ValueError(f"launch must be 'process' or 'docker', not {launch!r}")
    return GymVectorEnv(
        env, num_envs, provider=provider, max_episode_steps=max_episode_steps, **pool_options
    )


def remote_vector_env(
    num_envs: int,
    env_id: str,
    *,
    provider: Provider | Literal["process", "docker"] | None = None,
    pool_options: dict[str, Any] | None = None,
    **make_kwargs: Any,
) -> GymVectorEnv:
    """The ``vector_entry_point`` of ids registered for served Gymnasium envs
    (``openenv/CartPole-v1``): one :class:`GymVectorEnv` over one pool of ``env_id``'s
    servers; ``make_kwargs`` go to ``gymnasium.make`` on the servers."""
    options = dict(pool_options or {})
    if provider in (None, "process"):
        options.setdefault("sessions_per_server", num_envs)
    source = gym_provider(env_id, provider, **make_kwargs)
    return GymVectorEnv(f"{GYM_PREFIX}{env_id}", num_envs, provider=source, **options)
