"""An env server built with upstream OpenEnv's own ``create_app`` (openenv-core 0.3.0, or
``openenv`` 0.10).

Runs in a separate upstream venv (``make upstream-venv``: its package is also called
``openenv``), never in ours. Binds 127.0.0.1 on ``--port`` (0: a free port), prints
``PORT <n>`` on stdout once listening, and serves until stdin closes or it is terminated.

    .venv-upstream/bin/python benchmarks/upstream/upstream_server.py --env echo --port 0

``--env echo``: upstream's echo env shape (message -> echoed_message, message_length, reward
len/10). ``--env sleep``: the scaling benchmark's env: reset returns at once, each step sleeps
``wait_seconds`` (default 1.0) on the event loop. ``--env mcp_echo`` (0.10 only): upstream's
current echo env, an MCP tool env (``MCPEnvironment`` over FastMCP) whose one tool is
``echo_message(message) -> message``, served with ``CallToolAction`` / ``CallToolObservation``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import uuid
from typing import Any

import uvicorn
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, Observation, State


class EchoAction(Action):
    message: str


class EchoObservation(Observation):
    echoed_message: str = ""
    message_length: int = 0


class EchoEnvironment(Environment):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        super().__init__()
        self._state = State(episode_id=str(uuid.uuid4()), step_count=0)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any):
        self._state = State(episode_id=episode_id or str(uuid.uuid4()), step_count=0)
        return EchoObservation(echoed_message="Echo environment ready!", reward=0.0)

    def step(self, action: EchoAction, timeout_s: float | None = None, **kwargs: Any):
        self._state.step_count += 1
        message = action.message
        return EchoObservation(
            echoed_message=message, message_length=len(message), reward=len(message) / 10
        )

    @property
    def state(self) -> State:
        return self._state


class SleepAction(Action):
    wait_seconds: float = 1.0


class SleepObservation(Observation):
    slept: float = 0.0


class SleepEnvironment(Environment):
    """The scaling benchmark's env: async, so a sleeping step holds no thread."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        super().__init__()
        self._state = State(episode_id=str(uuid.uuid4()), step_count=0)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any):
        return SleepObservation()

    async def reset_async(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ):
        return self.reset(seed, episode_id, **kwargs)

    def step(self, action: SleepAction, timeout_s: float | None = None, **kwargs: Any):
        raise NotImplementedError("served through step_async")

    async def step_async(self, action: SleepAction, timeout_s: float | None = None, **kwargs: Any):
        await asyncio.sleep(action.wait_seconds)
        self._state.step_count += 1
        return SleepObservation(slept=action.wait_seconds, reward=1.0)

    @property
    def state(self) -> State:
        return self._state


def mcp_echo() -> tuple[Any, Any, Any]:
    """Upstream 0.10's kind of echo env: the tool ``echo_message`` over FastMCP."""
    from fastmcp import FastMCP
    from openenv.core.env_server.mcp_environment import MCPEnvironment
    from openenv.core.env_server.mcp_types import CallToolAction, CallToolObservation

    class McpEchoEnvironment(MCPEnvironment):
        SUPPORTS_CONCURRENT_SESSIONS = True

        def __init__(self) -> None:
            server = FastMCP("echo_env")

            @server.tool
            def echo_message(message: str) -> str:
                """Echo back the provided message."""
                return message

            super().__init__(server)
            self._state = State(episode_id=str(uuid.uuid4()), step_count=0)

        def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any):
            self._state = State(episode_id=episode_id or str(uuid.uuid4()), step_count=0)
            return Observation(done=False, reward=0.0, metadata={"status": "ready"})

        def _step_impl(self, action: Any, timeout_s: float | None = None, **kwargs: Any):
            return Observation(done=False, reward=0.0, metadata={"error": "not a tool call"})

        def step(self, action: Any, timeout_s: float | None = None, **kwargs: Any):
            self._state.step_count += 1
            return super().step(action, timeout_s=timeout_s, **kwargs)

        async def step_async(self, action: Any, timeout_s: float | None = None, **kwargs: Any):
            self._state.step_count += 1
            return await super().step_async(action, timeout_s=timeout_s, **kwargs)

        @property
        def state(self) -> State:
            return self._state

    return McpEchoEnvironment, CallToolAction, CallToolObservation


ENVS = {
    "echo": lambda: (EchoEnvironment, EchoAction, EchoObservation),
    "sleep": lambda: (SleepEnvironment, SleepAction, SleepObservation),
    "mcp_echo": mcp_echo,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", choices=sorted(ENVS), default="echo")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-sessions", type=int, default=100)  # upstream's app default
    parser.add_argument(
        "--uvloop", action="store_true", help="uvicorn on uvloop (pip install uvloop)"
    )
    args = parser.parse_args()
    env, action, observation = ENVS[args.env]()
    app = create_app(env, action, observation, max_concurrent_envs=args.max_sessions)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)
    loop = "uvloop" if args.uvloop else "auto"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=4096, loop=loop))

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
