"""The env's tools over MCP at /mcp, driven by the official MCP SDK's own client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from openenv.server import ServerConfig, create_app
from tests.conftest import running_server
from tests.tools.notes_env import NotesEnvironment

mcp = pytest.importorskip("mcp", reason="the mcp extra (make install adds it)")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def notes_app() -> Any:
    return create_app(NotesEnvironment, config=ServerConfig(max_sessions=4))


@pytest.fixture
async def mcp_url(notes_app: Any) -> Any:
    async with running_server(notes_app) as address:
        yield address.replace("ws://", "http://").removesuffix("/ws") + "/mcp"


async def test_an_mcp_session_lists_and_calls_tools_on_an_env_of_its_own(
    notes_app: Any, mcp_url: str
) -> None:
    async with mcp.Client(mcp_url, mode="legacy") as client:  # the handshake, a session
        listed = await client.list_tools()
        assert [t.name for t in listed.tools] == ["write", "read", "list", "submit"]
        write = listed.tools[0]
        assert write.description == "Write a note."
        assert write.input_schema["required"] == ["path", "text"]
        assert write.output_schema is not None
        assert write.output_schema["properties"]["size"] == {"type": "integer"}
        written = await client.call_tool("write", {"path": "answer", "text": "42"})
        assert not written.is_error
        assert written.structured_content == {"path": "answer", "size": 2}
        read = await client.call_tool("read", {"path": "answer"})
        assert read.structured_content == {"result": "42"}  # the session's env kept the note
        assert read.content[0].text == "42"
        submitted = await client.call_tool("submit", {})
        assert submitted.meta is not None
        assert submitted.meta["openenv"] == {"reward": 1.0, "done": True}
        raised = await client.call_tool("read", {"path": "nope"})
        assert raised.is_error and raised.content[0].text == "FileNotFoundError: no note 'nope'"
        bad = await client.call_tool("write", {"path": "a", "text": 3})
        assert bad.is_error
        assert bad.content[0].text == "tool 'write', argument 'text': Expected `str`, got `int`"
        assert len(notes_app.state.openenv.http_sessions) == 1
    async with asyncio.timeout(10):  # the client's DELETE ended the session and its env
        await notes_app.state.openenv.http_sessions.drained()
    assert notes_app.state.openenv.active_sessions == 0


async def test_sessionless_mcp_requests_get_a_fresh_env_each(mcp_url: str) -> None:
    async with mcp.Client(mcp_url, mode="auto") as client:  # 2026-07-28: no sessions
        assert len((await client.list_tools()).tools) == 4
        written = await client.call_tool("write", {"path": "a", "text": "b"})
        assert written.structured_content == {"path": "a", "size": 1}
        listed = await client.call_tool("list", {})
        assert listed.structured_content == {"result": []}  # another env: nothing written


async def test_the_terminal_envs_tools_over_mcp() -> None:
    from envs.terminal_env import AsyncTerminalEnv

    # A local server process on loopback TCP with a token (from_process makes one): no
    # sandbox, a test of the tools only.
    env = await AsyncTerminalEnv.from_process(transport="tcp")
    try:
        url = env.endpoint.url.replace("ws://", "http://").removesuffix("/ws") + "/mcp"
        token = env.endpoint.token
        assert token is not None
        transport = mcp.client.streamable_http.streamable_http_client
        async with (
            mcp_http_client(token) as http,
            mcp.Client(transport(url, http_client=http), mode="legacy") as client,
        ):
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"exec", "read_file", "write_file"} <= names
            await client.call_tool("write_file", {"path": "hi.txt", "content": "over MCP\n"})
            ran = await client.call_tool("exec", {"command": "cat hi.txt"})
            assert not ran.is_error
            assert ran.structured_content["stdout"] == "over MCP\n"
            assert ran.structured_content["exit_code"] == 0
    finally:
        await env.close()


def mcp_http_client(token: str) -> Any:
    """An HTTP client for the SDK's transport (httpx2, the SDK's own), presenting the token."""
    import httpx2

    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
