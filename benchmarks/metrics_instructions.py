"""Instructions per step that server metrics add to a session's hot path, under callgrind:
deterministic where wall-clock and CPU time on a shared machine are not.

One echo session (``Session.handle`` on binary step frames, no transport) runs N steps with
metrics off and on, each in its own callgrind run; the difference of the two counts over the
difference of the step counts (two lengths, so start-up cancels out: ``cpu_compare``) is the
cost per step.

    .venv/bin/python benchmarks/metrics_instructions.py [--steps 20000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from cpu_compare import callgrind_total, instructions_per_step

_VALGRIND = ("valgrind", "--tool=callgrind")
_RUN = """
import sys
from envs.echo_env.models import EchoAction
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.protocol import Codec, Hello, Reset, Step, request_type
from openenv.server.config import ServerConfig
from openenv.server.metrics import ServerMetrics
from openenv.server.session import Session

metrics = ServerMetrics() if sys.argv[1] == "on" else None
codec = Codec(request_type(EchoAction))
hello = Hello(protocol=2, env="echo", session_id="x")
session = Session(EchoEnvironment(), codec, hello, ServerConfig(), metrics=metrics)
session.handle(codec.encode(Reset(id=1)))
frame = codec.encode(Step(2, EchoAction(message="x" * 100)))
for _ in range(int(sys.argv[2])):
    session.handle(frame)
"""


def instructions(mode: str, steps: int) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "callgrind.out")
        subprocess.run(
            [
                *_VALGRIND,
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                _RUN,
                mode,
                str(steps),
            ],
            check=True,
            capture_output=True,
        )
        return callgrind_total(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    args = parser.parse_args()
    per_step = {}
    for mode in ("off", "on"):
        count = lambda steps, mode=mode: instructions(mode, steps)  # noqa: E731
        per_step[mode] = instructions_per_step(count, args.steps, 1)
        print(f"metrics {mode}: {per_step[mode]:,.0f} instructions per step (Session.handle)")
    added = per_step["on"] - per_step["off"]
    print(f"added by metrics: {added:,.0f} instructions per step ({added / per_step['off']:.1%})")


if __name__ == "__main__":
    main()
