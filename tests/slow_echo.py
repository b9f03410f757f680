"""An echo server whose steps sleep ``action.metadata["sleep"]`` seconds (for timeout tests);
served by subprocesses as ``tests.slow_echo:app``."""

from __future__ import annotations

import asyncio

from envs.echo_env.models import EchoAction, EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import create_app


class SlowEchoEnvironment(EchoEnvironment):
    async def step(self, action: EchoAction) -> EchoObservation:  # type: ignore[override]
        await asyncio.sleep(float(action.metadata.get("sleep", 0)))
        if action.message == "boom":
            raise RuntimeError("kaboom")
        return super().step(action)


app = create_app(SlowEchoEnvironment)
