"""SkyRL's env interface over openenv envs, driven by a scripted policy (no model).

Registers two skyrl-gym envs with :func:`openenv.integrations.skyrl.register` (the echo env,
and the terminal env with its tasks) and runs trajectories as SkyRL's generator does:
``skyrl_gym.make(id, env_config=..., extras=row)``, ``init(prompt)``, ``step(text)`` until
done, ``close()``, several at once on worker threads. Midway every echo server is killed under
a live trajectory: its next step is answered with the error, and the trajectories after it get
sessions on replacement servers.

    python examples/skyrl_scripted.py [--summary out.json]

Needs the trainer venv (``make trainer-venv``: skyrl-gym). The terminal env runs as a local
process here, which is not a sandbox: the scripted commands below are the only ones it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import skyrl_gym

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's envs/ package

from envs.echo_env.client import AsyncEchoEnv
from envs.terminal_env.client import AsyncTerminalEnv
from openenv.client.portal import run_sync
from openenv.integrations.skyrl import register
from openenv.providers.process import LocalProcessProvider

PROMPT = [{"role": "user", "content": "Use the tools."}]


def call(name: str, **arguments: object) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def echo_trajectory(message: str) -> dict:
    """Echo ``message``, then make two bad calls, then stop calling tools."""
    env = skyrl_gym.make("openenv-echo", env_config={}, extras={"seed": len(message)})
    try:
        prompt, _ = env.init(PROMPT)
        steps = [
            env.step(call("echo", message=message)),
            env.step(
                '<tool_call>{"name": "echo", "arguments": {"msg": 1}}</tool_call>'
                + call("shout", message="x")
                + "<tool_call>not json</tool_call>"
            ),
            env.step("I am done."),
        ]
        return {
            "prompt": prompt[-1]["content"],
            "rewards": [s["reward"] for s in steps],
            "done": [s["done"] for s in steps],
            "answers": [
                s["observations"][0]["content"] if s["observations"] else "" for s in steps
            ],
            "metrics": env.get_metrics(),
        }
    finally:
        env.close()


def _text(observations: list[dict]) -> str:
    return observations[0]["content"] if observations else ""


def terminal_trajectory() -> dict:
    """Solve the count_errors task: count, write the answer, evaluate."""
    env = skyrl_gym.make("openenv-terminal", env_config={}, extras={"task": "count_errors"})
    try:
        prompt, _ = env.init(PROMPT)
        solution = "grep -rlw ERROR logs --include='*.log' | wc -l > answer.txt && cat answer.txt"
        first = env.step(call("exec", command=solution))
        last = env.step(call("evaluate"))
        return {
            "instruction_shown": "Count the files under logs/" in prompt[-1]["content"],
            "rewards": [first["reward"], last["reward"]],
            "done": last["done"],
        }
    finally:
        env.close()


def killed_trajectory(echo) -> dict:
    """A trajectory whose server dies after init: the step is answered with the error."""
    env = skyrl_gym.make("openenv-echo", env_config={}, extras={})
    try:
        env.init(PROMPT)
        killed = [server.id for server in echo.pool.servers]
        for server in echo.pool.servers:
            run_sync(echo.pool.provider.kill(server))
        out = env.step(call("echo", message="into the void"))
        return {"killed": killed, "answer": out["observations"][0]["content"], "done": out["done"]}
    finally:
        env.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, default=None)
    options = parser.parse_args(argv)
    echo = register(
        "openenv-echo",
        AsyncEchoEnv,
        LocalProcessProvider("envs.echo_env"),
        max_sessions=4,
        sessions_per_server=2,
    )
    terminal = register(
        "openenv-terminal",
        AsyncTerminalEnv,
        LocalProcessProvider("envs.terminal_env"),  # not a sandbox: our own commands only
        max_sessions=1,
        reset_fields=["task"],
    )
    messages = ["hi", "hello", "hello there", "good morning", "a", "abc", "abcdef", "xyz"]
    try:
        with ThreadPoolExecutor(max_workers=6) as workers:  # more trajectories than sessions
            before = list(workers.map(echo_trajectory, messages))
            solved = workers.submit(terminal_trajectory)
            killed = killed_trajectory(echo)
            after = list(workers.map(echo_trajectory, messages))
            solved = solved.result()
    finally:
        servers = {s.id for s in echo.pool.servers} | {s.id for s in terminal.pool.servers}
        echo.close()
        terminal.close()
    summary = {
        "before": before,
        "after": after,
        "terminal": solved,
        "killed": killed,
        "servers_replaced": echo.pool.stats.servers_replaced,
        "tool_calls": echo.tool_calls + terminal.tool_calls,
        "server_ids": sorted(servers | set(killed["killed"])),
        "closed": echo.pool.provider.running() == [] and terminal.pool.provider.running() == [],
    }
    print(json.dumps(summary, indent=1))
    if options.summary is not None:
        options.summary.write_text(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
