"""Tool envs over our own wire: declared once with @tool, listed with schemas, called as steps."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets

from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv
from openenv import (
    AsyncEnvClient,
    EndpointProvider,
    EnvPool,
    InvalidActionError,
    NotResetError,
)
from openenv.protocol import SUBPROTOCOL
from openenv.server import Environment, ServerConfig, create_app, tool
from openenv.tools import ToolResult
from openenv.types import State
from tests.conftest import running_server
from tests.tools.notes_env import (
    BlockingNotesEnvironment,
    NotesAction,
    NotesEnvironment,
    NotesObservation,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def notes_server() -> Any:
    async with running_server(create_app(NotesEnvironment, config=ServerConfig())) as address:
        yield address


class NotesClient(AsyncEnvClient[NotesAction, NotesObservation, State]):
    pass


async def test_tools_are_listed_with_schemas_from_hints_and_docstrings(notes_server: str) -> None:
    async with AsyncEnvClient[Any, Any, Any](notes_server) as env:
        tools = {t.name: t for t in await env.list_tools()}  # no reset needed
    assert list(tools) == ["write", "read", "list", "submit"]
    write = tools["write"]
    assert write.description == "Write a note."
    assert write.input_schema == {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "the note's name."},
            "text": {
                "type": "string",
                "description": "what to write; with ``append``, added at its end.",
            },
            "append": {
                "type": "boolean",
                "default": False,
                "description": "keep what the note held.",
            },
        },
        "required": ["path", "text"],
        "additionalProperties": False,
    }
    assert write.output_schema is not None
    assert write.output_schema["properties"] == {
        "path": {"type": "string"},
        "size": {"type": "integer"},
    }
    assert tools["list"].description == "The names of all notes."
    assert tools["list"].output_schema == {"type": "array", "items": {"type": "string"}}
    assert tools["submit"].input_schema["properties"] == {}


async def test_calls_are_steps_with_results_reward_and_done(notes_server: str) -> None:
    async with AsyncEnvClient[Any, Any, Any](notes_server) as env:
        await env.reset()
        written = await env.call_tool("write", path="answer", text="4")
        assert isinstance(written.observation, ToolResult)
        assert written.observation.tool_name == "write"
        assert written.observation.result == {"path": "answer", "size": 1}
        assert (written.reward, written.done) == (None, False)
        await env.call_tool("write", path="answer", text="2", append=True)
        assert (await env.call_tool("read", path="answer")).observation.result == "42"
        assert (await env.call_tool("list")).observation.result == ["answer"]
        submitted = await env.call_tool("submit")
        assert (submitted.reward, submitted.done) == (1.0, True)
        assert submitted.observation.result == {"notes": 1, "verdict": "right"}
        assert (await env.state()).step_count == 4


async def test_bad_calls_are_refused_naming_the_argument_and_the_session_goes_on(
    notes_server: str,
) -> None:
    async with AsyncEnvClient[Any, Any, Any](notes_server) as env:
        with pytest.raises(NotResetError):
            await env.call_tool("read", path="x")
        await env.reset()
        with pytest.raises(InvalidActionError, match=r"'write', argument 'text': Expected `str`"):
            await env.call_tool("write", path="a", text=3)
        with pytest.raises(InvalidActionError, match=r"'write', .*missing required field `text`"):
            await env.call_tool("write", path="a")
        with pytest.raises(InvalidActionError, match=r"unknown field `paht`"):
            await env.call_tool("read", paht="a")
        with pytest.raises(InvalidActionError, match=r"no tool 'rm' \(its tools: write, read"):
            await env.call_tool("rm", path="a")
        assert (await env.state()).step_count == 0  # no tool ran
        result = await env.call_tool("write", path="a", text="ok")
        assert result.observation.ok


async def test_a_tool_that_raises_answers_its_error(notes_server: str) -> None:
    async with AsyncEnvClient[Any, Any, Any](notes_server) as env:
        await env.reset()
        result = await env.call_tool("read", path="nope")
        observation = result.observation
        assert not observation.ok and observation.result is None
        assert (observation.error.type, observation.error.message) == (
            "FileNotFoundError",
            "no note 'nope'",
        )
        assert (await env.call_tool("list")).observation.result == []


async def test_tools_of_a_blocking_env_run_on_its_thread() -> None:
    app = create_app(BlockingNotesEnvironment, config=ServerConfig())
    async with running_server(app) as address, AsyncEnvClient[Any, Any, Any](address) as env:
        await env.reset()
        result = await env.call_tool("write", path="a", text="b")
        assert result.observation.result["size"] == 1
        assert (await env.call_tool("list", delay=0.01)).observation.result == ["a"]


async def test_tool_calls_in_json_text_frames(notes_server: str) -> None:
    async with websockets.connect(notes_server, subprotocols=[SUBPROTOCOL]) as ws:
        await ws.recv()  # hello (binary)
        for request in (
            {"type": "list_tools", "id": 1},
            {"type": "reset", "id": 2},
            {
                "type": "call_tool",
                "id": 3,
                "name": "write",
                "arguments": {"path": "p", "text": "t"},
            },
            {"type": "call_tool", "id": 4, "name": "write", "arguments": {"path": 1}},
        ):
            await ws.send(json.dumps(request))
        replies = [json.loads(await ws.recv()) for _ in range(4)]
    assert replies[0]["type"] == "tools" and replies[0]["tools"][0]["name"] == "write"
    assert replies[2] == {
        "type": "tool_result",
        "id": 3,
        "observation": {"tool_name": "write", "result": {"path": "p", "size": 1}},
    }
    assert replies[3]["type"] == "error" and replies[3]["code"] == "invalid_action"
    assert "argument 'path'" in replies[3]["message"]


async def test_forks_copy_what_tools_did(notes_server: str) -> None:
    async with AsyncEnvClient[Any, Any, Any](notes_server) as env:
        await env.reset()
        await env.call_tool("write", path="a", text="1")
        fork = await env.fork()
        try:
            await fork.call_tool("write", path="b", text="2")
            assert (await fork.call_tool("list")).observation.result == ["a", "b"]
            assert (await env.call_tool("list")).observation.result == ["a"]
        finally:
            await fork.close()


async def test_pool_envs_call_tools(notes_server: str) -> None:
    provider = EndpointProvider([notes_server])
    async with EnvPool(NotesClient, provider, size=3) as pool:

        async def episode(env: NotesClient) -> float | None:
            await env.reset()
            await env.call_tool("write", path="answer", text="42")
            return (await env.call_tool("submit")).reward

        outcomes = await pool.run_episodes(episode, 6)
        assert [o.result for o in outcomes] == [1.0] * 6


async def test_an_env_without_tools_lists_none_and_refuses_calls() -> None:
    from tests.gym.countdown import CountdownEnvironment

    app = create_app(CountdownEnvironment, config=ServerConfig())
    async with running_server(app) as address, AsyncEnvClient[Any, Any, Any](address) as env:
        assert await env.list_tools() == []
        await env.reset()
        with pytest.raises(InvalidActionError, match=r"no tool 'x' \(its tools: none\)"):
            await env.call_tool("x")


def test_the_sync_twin_lists_and_calls_tools() -> None:
    with EchoEnv.from_process() as env:  # `openenv serve envs.echo_env` in a subprocess
        assert [t.name for t in env.list_tools()] == ["echo_message"]
        env.reset()
        assert env.step(EchoAction(message="hi")).reward == 0.2  # the typed action still works
        result = env.call_tool("echo_message", message="Hello!")
        assert result.observation.result == "Hello!"
        assert env.state().step_count == 2


async def test_the_echo_env_offers_echo_message(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server) as env:
        (echo,) = await env.list_tools()
        assert echo.name == "echo_message"
        assert echo.input_schema["required"] == ["message"]
        assert echo.output_schema == {"type": "string"}
        await env.reset()
        assert (await env.call_tool("echo_message", message="x")).observation.result == "x"


def test_tools_declared_wrongly_fail_where_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match=r"'reset' cannot name a tool"):

        class Reserved(NotesEnvironment):
            @tool(name="reset")
            def again(self) -> None: ...

    with pytest.raises(TypeError, match=r"named arguments only, not \*paths"):

        class Star(NotesEnvironment):
            @tool
            def many(self, *paths: str) -> None: ...

    with pytest.raises(TypeError, match=r"two tools are named 'read'"):

        class Twice(NotesEnvironment):
            @tool(name="read")
            def other(self) -> None: ...


def test_a_subclass_keeps_and_overrides_tools() -> None:
    from openenv.server.tools import toolbox

    class Louder(NotesEnvironment):
        def read(self, path: str) -> str:  # an override of a tool stays that tool
            return super().read(path).upper()

    assert [spec.name for spec in toolbox(Louder).specs] == ["write", "read", "list", "submit"]
    env = Louder()
    env.reset()
    env.write("a", "x")
    assert toolbox(Louder).prepare(env, "read", {"path": "a"})().result == "X"
    assert issubclass(Louder, Environment)


async def test_fresh_servers_per_episode_serve_tools_too() -> None:
    from openenv import LocalProcessProvider

    provider = LocalProcessProvider("tests.tools.notes_env:app")
    pool = EnvPool(
        NotesClient, provider, size=2, fresh_per_episode=True, spares=1, start_concurrency=2
    )
    async with pool:

        async def episode(env: NotesClient) -> tuple[Any, Any]:
            await env.reset()
            pid = (await env.call_tool("server_pid")).observation.result
            await env.call_tool("write", path="answer", text="42")
            return pid, (await env.call_tool("submit")).reward

        outcomes = await pool.run_episodes(episode, 3)
    pids = [o.result[0] for o in outcomes]
    assert len(set(pids)) == 3  # each episode on a server of its own
    assert [o.result[1] for o in outcomes] == [1.0] * 3
