"""Step one sync EchoEnv N times after a warm-up, for callgrind's instruction count.

    valgrind --tool=callgrind .venv/bin/python benchmarks/sync_steps.py 1000
    valgrind --tool=callgrind .venv/bin/python benchmarks/sync_steps.py 3000

The difference of the two totals divided by 2000 is a sync step's instructions (start-up and
the server's start cancel out; the server runs in a process of its own, not counted).
"""

import sys

from envs.echo_env import EchoAction, EchoEnv

steps = int(sys.argv[1])
action = EchoAction(message="x" * 100)
with EchoEnv.from_process() as env:
    env.reset()
    for _ in range(200):
        env.step(action)
    for _ in range(steps):
        env.step(action)
