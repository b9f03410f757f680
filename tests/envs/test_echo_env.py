"""The echo env end to end, as its README shows it, plus the env checker."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.testing import check_env

SYNC_SNIPPET = """
from envs.echo_env import EchoAction, EchoEnv
client = EchoEnv.from_process()
result = client.reset(); print(result.observation.echoed_message)
result = client.step(EchoAction(message="Hello, World!")); print(result.observation.echoed_message)
print(result.reward)
client.close()
"""

ASYNC_SNIPPET = """
import asyncio
from envs.echo_env import AsyncEchoEnv, EchoAction

async def main():
    async with await AsyncEchoEnv.from_process() as client:
        result = await client.reset(); print(result.observation.echoed_message)
        result = await client.step(EchoAction(message="Hello, World!"))
        print(result.observation.echoed_message); print(result.reward)

asyncio.run(main())
"""

EXPECTED = "Echo environment ready!\nHello, World!\n1.3\n"


def run_snippet(snippet: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(snippet)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sync_snippet_prints_the_expected_lines() -> None:
    assert run_snippet(SYNC_SNIPPET) == EXPECTED


def test_async_snippet_prints_the_expected_lines() -> None:
    assert run_snippet(ASYNC_SNIPPET) == EXPECTED


def test_sync_client_in_process_with_context_manager() -> None:
    with EchoEnv.from_process() as env:
        env.reset(episode_id="e")
        assert env.step(EchoAction(message="four")).observation.message_length == 4
        assert env.state().step_count == 1


async def test_sync_client_works_inside_a_running_event_loop() -> None:
    # As in Jupyter: the calling thread runs a loop; the sync client must still work.
    with EchoEnv.from_process() as env:
        assert env.reset().observation.echoed_message == "Echo environment ready!"


async def test_async_client_from_process_over_tcp() -> None:
    async with await AsyncEchoEnv.from_process(transport="tcp") as env:
        await env.reset()
        assert (await env.step(EchoAction(message="0123456789"))).reward == 1.0


def test_echo_environment_passes_the_env_checker() -> None:
    check_env(EchoEnvironment, actions=[EchoAction(message=""), EchoAction(message="hi")])
