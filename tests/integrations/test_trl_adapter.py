"""openenv.integrations.trl's environment class, driven as TRL drives it (sync reset(**row),
tool methods, get_reward), over real echo server processes; no TRL needed."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from envs.echo_env.client import AsyncEchoEnv
from openenv.client.portal import run_sync
from openenv.exceptions import PoolError
from openenv.integrations.trl import EnvironmentFactory, ToolCallError
from openenv.providers.process import LocalProcessProvider

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def factory() -> Iterator[EnvironmentFactory[AsyncEchoEnv]]:
    made = EnvironmentFactory(
        AsyncEchoEnv, LocalProcessProvider("envs.echo_env"), max_sessions=2, sessions_per_server=2
    )
    yield made
    made.close()


def test_the_only_public_methods_are_reset_get_reward_and_the_tools(factory) -> None:
    env = factory()
    public = sorted(n for n, _ in inspect.getmembers(env, inspect.ismethod) if n[0] != "_")
    # The env's declared tool (echo_message) and one per action kind (EchoAction -> echo).
    assert public == ["echo", "echo_message", "get_reward", "reset"]
    # TRL reads a tool's schema from its signature and docstring.
    assert str(inspect.signature(env.echo)) == "(message: str) -> str"
    assert "Args:\n    message:" in env.echo.__doc__
    assert str(inspect.signature(env.echo_message)) == "(message: str) -> str"
    assert "Args:\n    message: the text to echo." in env.echo_message.__doc__


def test_which_tools() -> None:
    actions = EnvironmentFactory(
        AsyncEchoEnv, LocalProcessProvider("envs.echo_env"), max_sessions=1, tools="actions"
    )
    assert [spec.name for spec in actions.tools] == ["echo"]
    assert actions.pool.servers == []  # only action kinds: nothing started to list tools
    actions.close()
    declared = EnvironmentFactory(
        AsyncEchoEnv, LocalProcessProvider("envs.echo_env"), max_sessions=1, tools="declared"
    )
    try:
        assert [spec.name for spec in declared.tools] == ["echo_message"]
        env = declared()
        env.reset()
        assert env.echo_message(message="Hello!") == "Hello!"  # a call_tool, by name
        with pytest.raises(ToolCallError, match="Expected `str`, got `int`"):
            env.echo_message(message=3)  # the server checks a declared tool's arguments
        assert env.get_reward() == 0.0  # echo_message gives no reward
    finally:
        declared.close()


def test_an_episode_as_trl_runs_it(factory) -> None:
    env = factory()
    # Dataset columns the env does not declare (prompt, answer) are not passed to it.
    first = env.reset(prompt=[{"role": "user", "content": "hi"}], answer="x", seed=1)
    assert first == "\n\nEcho environment ready!"
    assert env.echo(message="hello") == "echoed_message: hello\nmessage_length: 5"
    assert env.echo(message="hi") == "echoed_message: hi\nmessage_length: 2"
    assert env.get_reward() == pytest.approx(0.7)
    env.reset()
    assert env.get_reward() == 0.0
    assert factory.tool_calls == 2 and factory.tool_failures == 0


def test_bad_arguments_are_a_tool_failure(factory) -> None:
    env = factory()
    env.reset()
    with pytest.raises(ToolCallError, match="unexpected arguments"):
        env.echo(msg="x")
    with pytest.raises(ToolCallError, match="Expected `str`"):
        env.echo(message=3)
    assert factory.tool_failures == 2
    assert env.echo(message="still fine").startswith("echoed_message: still fine")


def test_a_dead_server_fails_the_call_then_the_next_reset_replaces_it(factory) -> None:
    env = factory()
    env.reset()
    (server,) = factory.pool.servers
    run_sync(factory.pool.provider.kill(server))
    with pytest.raises(ToolCallError, match="echo\\(\\) failed"):
        env.echo(message="into the void")
    assert factory.tool_failures == 1
    assert env.reset() == "\n\nEcho environment ready!"  # healed: a new server, a new session
    assert env.echo(message="back").startswith("echoed_message: back")
    assert factory.stats.servers_replaced == 1
    assert factory.pool.servers[0].id != server.id


def test_more_rollouts_than_sessions_is_a_clear_error(factory) -> None:
    envs = [factory() for _ in range(3)]
    envs[0].reset()
    envs[1].reset()
    with pytest.raises(PoolError, match="max_sessions=2"):
        envs[2].reset()
    envs[0].reset()  # an instance's own next reset gives its session back first


def test_close_stops_every_server_and_ends_the_factory(factory) -> None:
    env = factory()
    env.reset()
    factory.close()
    assert factory.pool.provider.running() == []
    with pytest.raises(PoolError, match="closed"):
        env.reset()


def test_a_terminal_task_with_one_tool_per_operation() -> None:
    from envs.terminal_env.client import AsyncTerminalEnv

    factory = EnvironmentFactory(
        AsyncTerminalEnv,
        LocalProcessProvider("envs.terminal_env"),  # not a sandbox: only our own commands run
        max_sessions=1,
        reset_fields=["task"],
    )
    try:
        env = factory()
        tools = sorted(n for n, _ in inspect.getmembers(env, inspect.ismethod) if n[0] != "_")
        assert tools == [
            "evaluate", "exec", "get_reward", "kill", "list_dir", "poll", "read_file", "reset",
            "start", "write_file",
        ]  # fmt: skip
        # exec, read_file and write_file are the env's declared tools; the rest its actions.
        assert [spec.build is None for spec in factory.tools[:3]] == [True, True, True]
        assert "bash source" in env.exec.__doc__
        first = env.reset(task="count_errors", prompt="ignored")
        assert "Count the files under logs/" in first
        solution = "grep -rlw ERROR logs --include='*.log' | wc -l"
        count = env.exec(command=solution).splitlines()[0]
        env.write_file(path="answer.txt", content=count.removeprefix("stdout: ") + "\n")
        assert "passed" in env.evaluate()
        assert env.get_reward() == 1.0
        with pytest.raises(ToolCallError, match="the episode is over"):
            env.exec(command="true")
    finally:
        factory.close()
