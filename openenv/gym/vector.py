"""``GymVectorEnv``: an :class:`~openenv.EnvPool` as a ``gymnasium.vector.VectorEnv``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import gymnasium
import msgspec
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from openenv.client.portal import run_sync
from openenv.gym.env import env_classes, spaces_of
from openenv.gym.spaces import SpaceMap
from openenv.launch import Env, EnvPool
from openenv.providers.base import Provider
from openenv.types import StepResult

__all__ = ["GymVectorEnv"]


class GymVectorEnv(gymnasium.vector.VectorEnv[Any, Any, Any]):
    """``num_envs`` env sessions of one env, stepped concurrently, with Gymnasium's next-step
    autoreset (``metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP``).

    Once sub-env ``i`` terminates or truncates, the next ``step`` ignores its action and resets
    it: that step returns its first observation, reward 0 and neither flag set. ``reset(seed=s)``
    seeds sub-env ``i`` with ``s + i`` (a list gives one seed each). ``terminated`` is the
    env's ``done``; ``truncated`` comes from ``max_episode_steps``. ``infos["observation"]``
    holds the typed observations.

    Args:
        env: a registered env name (``"echo"``), an env package, or its sync client class.
        num_envs: sessions.
        provider: where servers run (default: local processes of the client's ``server_app``,
            all sessions on one server).
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
        async_cls = env_classes(env)[0].async_client
        if provider is None:
            from openenv.providers.process import LocalProcessProvider

            provider = LocalProcessProvider(async_cls._require_app())
            pool_options.setdefault("sessions_per_server", num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.pool: EnvPool[Any] = EnvPool(async_cls, provider, num_envs, **pool_options)
        run_sync(self.pool.start())
        self._observations: SpaceMap
        self._actions: SpaceMap
        try:
            hello = self.pool.envs[0].hello
            assert hello is not None
            self._observations, self._actions = spaces_of(hello, async_cls.action_type)
        except BaseException:
            run_sync(self.pool.close())  # nothing the pool started may outlive a failed init
            raise
        self.single_observation_space = self._observations.space
        self.single_action_space = self._actions.space
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
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        envs = self.pool.envs

        async def reset_all() -> list[StepResult[Any]]:
            calls = (
                env.reset(seed=s, **(options or {})) for env, s in zip(envs, seeds, strict=True)
            )
            return list(await asyncio.gather(*calls))

        results = run_sync(reset_all())
        self._autoreset[:] = False
        self._steps[:] = 0
        return self._batch(results), self._infos(results)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        per_env = list(iterate(self.action_space, actions))
        resetting = self._autoreset.copy()
        envs = self.pool.envs

        async def one(i: int) -> StepResult[Any]:
            result: StepResult[Any]
            if resetting[i]:
                result = await envs[i].reset()
            else:
                result = await envs[i].step(self._actions.from_gym(per_env[i]))
            return result

        async def step_all() -> list[StepResult[Any]]:
            return list(await asyncio.gather(*(one(i) for i in range(self.num_envs))))

        results = run_sync(step_all())
        self._steps = np.where(resetting, 0, self._steps + 1)
        rewards = np.array([0.0 if r.reward is None else r.reward for r in results])
        rewards[resetting] = 0.0
        terminated = np.array([r.done for r in results], dtype=np.bool_) & ~resetting
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        if self.max_episode_steps is not None:
            # As Gymnasium's TimeLimit: an episode that ends as time runs out is both.
            truncated = (self._steps >= self.max_episode_steps) & ~resetting
        self._autoreset = terminated | truncated
        return self._batch(results), rewards, terminated, truncated, self._infos(results)

    def close_extras(self, **kwargs: Any) -> None:
        run_sync(self.pool.close())

    def _batch(self, results: list[StepResult[Any]]) -> Any:
        items = [self._observations.to_gym(msgspec.to_builtins(r.observation)) for r in results]
        out: Any = create_empty_array(self.single_observation_space, self.num_envs)
        return concatenate(self.single_observation_space, items, out)

    def _infos(self, results: list[StepResult[Any]]) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        for i, result in enumerate(results):
            infos = self._add_info(infos, {"observation": result.observation}, i)
        return infos
