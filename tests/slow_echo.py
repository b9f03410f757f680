"""An echo server whose steps sleep ``action.metadata["sleep"]`` seconds (for timeout tests)
and whose reset reports the seed it got in the observation's metadata; served by subprocesses
as ``tests.slow_echo:app``."""

from __future__ import annotations

import asyncio
from typing import Any

from envs.echo_env.models import EchoAction, EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import create_app


class SlowEchoEnvironment(EchoEnvironment):
    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> EchoObservation:
        observation = super().reset(seed, episode_id, **options)
        observation.metadata = {"seed": seed}
        return observation

    async def step(self, action: EchoAction) -> EchoObservation:  # type: ignore[override]
        await asyncio.sleep(float(action.metadata.get("sleep", 0)))
        if action.message == "boom":
            raise RuntimeError("kaboom")
        return super().step(action)


app = create_app(SlowEchoEnvironment)
