"""Tools in upstream OpenEnv 0.10's terms on our server: tool steps and {"type":"mcp"} JSON-RPC
on /ws, and the session-bound flow of its MCPToolClient on POST /mcp (+ /ws?session_id=)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from openenv import AsyncEnvClient, InvalidActionError
from openenv.server import ServerConfig, create_app
from openenv.types import GenericObservation, GenericState
from tests.conftest import running_server
from tests.tools.notes_env import NotesEnvironment

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def notes_app() -> Any:
    return create_app(NotesEnvironment, config=ServerConfig(max_sessions=4))


@pytest.fixture
async def notes_server(notes_app: Any) -> Any:
    async with running_server(notes_app) as address:
        yield address


def rpc(method: str, call_id: int = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}


async def exchange(ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


async def test_mcp_messages_on_the_websocket_list_and_call_tools(notes_server: str) -> None:
    async with websockets.connect(notes_server) as ws:  # no subprotocol: upstream's dialect
        listed = await exchange(ws, {"type": "mcp", "data": rpc("tools/list")})
        assert listed["type"] == "mcp" and listed["data"]["id"] == 1
        tools = listed["data"]["result"]["tools"]
        assert [t["name"] for t in tools] == ["write", "read", "list", "submit"]
        assert tools[0]["inputSchema"]["required"] == ["path", "text"]  # what verifiers reads
        called = await exchange(
            ws, {"type": "mcp", "data": rpc("tools/call", 2, name="read", arguments={"path": "x"})}
        )
        result = called["data"]["result"]
        assert result["isError"] and "FileNotFoundError" in result["content"][0]["text"]
        bad = await exchange(
            ws, {"type": "mcp", "data": rpc("tools/call", 3, name="read", arguments={"p": 1})}
        )
        assert bad["data"]["error"]["code"] == -32602
        assert "unknown field `p`" in bad["data"]["error"]["message"]


async def test_tool_steps_answer_as_upstream_mcp_envs_do(notes_server: str) -> None:
    async with websockets.connect(notes_server) as ws:
        await exchange(ws, {"type": "reset", "data": {}})
        step = {"type": "call_tool", "tool_name": "write", "arguments": {"path": "a", "text": "42"}}
        written = await exchange(ws, {"type": "step", "data": step})
        observation = written["data"]["observation"]
        assert observation["tool_name"] == "write" and observation["error"] is None
        assert observation["result"]["data"] == {"path": "a", "size": 2}  # MCPToolClient's read
        # Arguments as a JSON string, as upstream's web interface sends them.
        step = {
            "type": "call_tool",
            "tool_name": "write",
            "arguments": '{"path":"answer","text":"42"}',
        }
        await exchange(ws, {"type": "step", "data": step})
        submitted = await exchange(
            ws, {"type": "step", "data": {"type": "call_tool", "tool_name": "submit"}}
        )
        assert (submitted["data"]["reward"], submitted["data"]["done"]) == (1.0, True)
        listed = await exchange(ws, {"type": "step", "data": {"type": "list_tools"}})
        assert listed["data"]["observation"]["tools"][1]["input_schema"]["required"] == ["path"]
        bad = await exchange(
            ws,
            {"type": "step", "data": {"type": "call_tool", "tool_name": "read", "arguments": {}}},
        )
        assert bad["data"]["code"] == "VALIDATION_ERROR"
        assert bad["data"]["errors"][0]["loc"] == ["data", "arguments", "path"]
        plain = await exchange(ws, {"type": "step", "data": {"text": "typed actions still work"}})
        assert plain["data"]["observation"]["notes"] == 3


async def test_our_client_calls_tools_in_upstreams_dialect(notes_server: str) -> None:
    async with AsyncEnvClient[Any, Any, Any](notes_server, protocol="upstream") as env:
        assert [t.name for t in await env.list_tools()] == ["write", "read", "list", "submit"]
        await env.reset()
        written = await env.call_tool("write", path="answer", text="42")
        assert written.observation.result == {"path": "answer", "size": 2}
        missing = await env.call_tool("read", path="nope")
        assert missing.observation.error is not None
        assert missing.observation.error.message == "no note 'nope'"
        with pytest.raises(InvalidActionError, match=r"argument 'path'"):
            await env.call_tool("read", path=3)
        submitted = await env.call_tool("submit")
        assert (submitted.reward, submitted.done) == (1.0, True)
        assert submitted.observation.result == {"notes": 1, "verdict": "right"}


async def test_a_generic_client_keeps_the_fields_it_does_not_know(notes_server: str) -> None:
    for protocol in ("openenv", "upstream"):
        async with AsyncEnvClient[Any, Any, Any](notes_server, protocol=protocol) as env:
            await env.reset(episode_id="e")
            result = await env.step({"text": "abc"})
            assert isinstance(result.observation, GenericObservation)
            assert result.observation.notes == 1  # a field of NotesObservation only
            assert result.observation.fields()["notes"] == 1
            state = await env.state()
            assert isinstance(state, GenericState) and state.step_count == 1


async def test_upstream_mcp_tool_client_flow_over_http(notes_app: Any, notes_server: str) -> None:
    base = notes_server.replace("ws://", "http://").removesuffix("/ws")
    async with httpx.AsyncClient(base_url=base) as http:

        async def call(method: str, **params: Any) -> dict[str, Any]:
            response = await http.post("/mcp", json=rpc(method, **params))
            assert response.status_code == 200
            body: dict[str, Any] = response.json()
            return body

        session = (await call("openenv/session/create"))["result"]["session_id"]
        tools = (await call("tools/list", session_id=session))["result"]["tools"]
        assert tools[0]["name"] == "write"
        written = await call(
            "tools/call", session_id=session, name="write", arguments={"path": "p", "text": "t"}
        )
        assert written["result"]["data"] == {"path": "p", "size": 1}
        assert written["result"]["structuredContent"] == {"path": "p", "size": 1}
        read = await call("tools/call", session_id=session, name="read", arguments={"path": "p"})
        assert read["result"]["data"] == "t"  # the same env: the session keeps it
        assert read["result"]["structuredContent"] == {"result": "t"}
        # A WebSocket attached to the session sees the same env.
        async with websockets.connect(f"{notes_server}?session_id={session}") as ws:
            state = await exchange(ws, {"type": "state"})
            assert state["data"]["step_count"] == 2
            second = await websockets.connect(f"{notes_server}?session_id={session}")
            refused = json.loads(await second.recv())
            assert refused["data"]["code"] == "SESSION_ERROR"
            await second.close()
            closing = await call("openenv/session/close", session_id=session)
            assert closing["result"] == {"session_id": session, "closed": False, "closing": True}
        async with asyncio.timeout(10):  # the close completes once the WebSocket has gone
            await notes_app.state.openenv.http_sessions.drained()
        gone = await call("tools/list", session_id=session)
        assert gone["error"]["message"] == f"Unknown session_id: {session}"
        stateless = await call("tools/call", name="list", arguments={})
        assert stateless["result"]["data"] == []
        unknown = await call("openenv/session/close", session_id="nope")
        assert unknown["error"]["code"] == -32602


async def test_http_sessions_count_against_capacity_and_are_reaped_when_idle() -> None:
    config = ServerConfig(max_sessions=2, session_idle_timeout=0.2)
    app = create_app(NotesEnvironment, config=config)
    server = app.state.openenv
    async with running_server(app) as address:
        base = address.replace("ws://", "http://").removesuffix("/ws")
        async with httpx.AsyncClient(base_url=base) as http:
            created = [
                (await http.post("/mcp", json=rpc("openenv/session/create"))).json()
                for _ in range(3)
            ]
            assert "result" in created[0] and "result" in created[1]
            assert created[2]["error"]["code"] == -32000  # full
            assert "capacity" in created[2]["error"]["message"]
            async with asyncio.timeout(10):
                await server.http_sessions.drained()  # both reaped, idle for 0.2 s
            assert server.active_sessions == 0
            again = (await http.post("/mcp", json=rpc("openenv/session/create"))).json()
            assert "result" in again


async def test_every_mcp_route_wants_the_token() -> None:
    app = create_app(NotesEnvironment, config=ServerConfig(token="s3cret"))
    async with running_server(app) as address:
        base = address.replace("ws://", "http://").removesuffix("/ws")
        async with httpx.AsyncClient(base_url=base) as http:
            refused = await http.post("/mcp", json=rpc("openenv/session/create"))
            assert refused.status_code == 401
            sse = await http.post(
                "/mcp",
                json=rpc("initialize"),
                headers={"Accept": "application/json, text/event-stream"},
            )
            assert sse.status_code == 401
            granted = await http.post(
                "/mcp",
                json=rpc("openenv/session/create"),
                headers={"Authorization": "Bearer s3cret"},
            )
            assert "session_id" in granted.json()["result"]
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(f"{address}?session_id=anything")
