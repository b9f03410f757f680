"""An echo env for the attacks: ``message`` "big:N" echoes N bytes back (a small request, a
large reply), its state holds a million ints (a slow deep copy for a fork), and its reset
reports in its observation whether the server's token is in the environment; served by
subprocesses as ``tests.security.big_env:app``."""

from __future__ import annotations

import ctypes
import os
from typing import Any

from envs.echo_env.models import EchoAction, EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import create_app

BIG_STATE = 1_000_000


class BigEchoEnvironment(EchoEnvironment):
    def __init__(self) -> None:
        super().__init__()
        self.ballast = list(range(BIG_STATE))

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> EchoObservation:
        observation = super().reset(seed, episode_id, **options)
        observation.metadata = {
            "token_in_environ": "OPENENV_TOKEN" in os.environ,
            "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
        }
        return observation

    def step(self, action: EchoAction) -> EchoObservation:
        if action.message.startswith("big:"):
            size = int(action.message.removeprefix("big:"))
            return EchoObservation(echoed_message="x" * size, message_length=size)
        return super().step(action)


app = create_app(BigEchoEnvironment)
