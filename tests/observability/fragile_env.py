"""An echo server whose env raises on the message "boom", for ``openenv serve`` subprocesses
(``tests.observability.fragile_env:app``)."""

from __future__ import annotations

from envs.echo_env.models import EchoAction, EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import create_app


class FragileEnvironment(EchoEnvironment):
    def step(self, action: EchoAction) -> EchoObservation:
        if action.message == "boom":
            raise RuntimeError("boom")
        return super().step(action)


app = create_app(FragileEnvironment)
