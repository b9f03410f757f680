"""An echo server whose process remembers being used (for fresh-server tests); served by
subprocesses as ``tests.marker_env:app``.

Every step answers ``"fresh"`` the first time any session of the server process steps, and
``"used"`` ever after: a per-server marker that outlives sessions.
"""

from __future__ import annotations

import os

from envs.echo_env.models import EchoAction, EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import create_app

_used = False


class MarkerEnvironment(EchoEnvironment):
    def step(self, action: EchoAction) -> EchoObservation:
        global _used
        seen, _used = _used, True
        return EchoObservation(
            echoed_message="used" if seen else "fresh", metadata={"pid": os.getpid()}
        )


app = create_app(MarkerEnvironment)
