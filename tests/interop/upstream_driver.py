"""Drives an env server with upstream OpenEnv's own clients (openenv-core 0.3.0 or openenv 0.10).

Runs in an upstream venv (its package is also called ``openenv``), as a subprocess of the
interop tests: ``python upstream_driver.py MODE[,MODE...] BASE_URL`` prints one JSON document
of what the server answered, for the test to check (and to compare with upstream's own server).

Modes: ``generic`` (GenericEnvClient, async), ``typed`` (an upstream-style EchoEnv client, through
its ``.sync()`` wrapper), ``http`` (plain HTTP with urllib), ``errors`` (bad frames on a raw
websocket, as upstream's client would send them), ``validate`` (upstream's ``openenv validate
--url`` checks), ``metadata`` (GenericEnvClient: an observation's metadata, inside it and
beside it). 0.10 only: ``autoenv`` (``AutoEnv.from_env(..., base_url=...)``), ``mcp`` (its
``MCPToolClient`` on the echo tool, a raw ``{"type":"mcp"}`` tools/list on ``/ws`` as verifiers
sends it, and a ``call_tool`` step from GenericEnvClient), ``mcp_terminal`` (``MCPToolClient``
on terminal_env's tools).
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from openenv.core.client_types import StepResult
from openenv.core.env_client import EnvClient
from openenv.core.env_server.types import Action, Observation, State
from openenv.core.generic_client import GenericEnvClient
from websockets.asyncio.client import connect


class EchoAction(Action):
    message: str


class EchoObservation(Observation):
    echoed_message: str = ""
    message_length: int = 0


class EchoEnv(EnvClient[EchoAction, EchoObservation, State]):
    """The typed client an upstream env package ships (cf. upstream's envs/echo_env/client.py)."""

    def _step_payload(self, action: EchoAction) -> dict[str, Any]:
        return action.model_dump()

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[EchoObservation]:
        observation = EchoObservation(
            **payload.get("observation", {}),
            done=payload.get("done", False),
            reward=payload.get("reward"),
        )
        return StepResult(
            observation=observation, reward=payload.get("reward"), done=payload["done"]
        )

    def _parse_state(self, payload: dict[str, Any]) -> State:
        return State(**payload)


async def generic(base_url: str) -> dict[str, Any]:
    async with GenericEnvClient(base_url=base_url) as env:
        reset = await env.reset(seed=3)
        step = await env.step({"message": "Hello, World!"})
        state = await env.state()
        try:
            await env.step({"nope": 1})
            bad = None
        except RuntimeError as exc:
            bad = str(exc)
        after = await env.step({"message": "still here"})
    return {
        "reset": [reset.observation, reset.reward, reset.done],
        "step": [step.observation, step.reward, step.done],
        "step_count": state["step_count"],
        "bad_action": bad,
        "after": after.observation,
    }


def typed(base_url: str) -> dict[str, Any]:
    with EchoEnv(base_url=base_url).sync() as env:
        reset = env.reset()
        step = env.step(EchoAction(message="abc"))
        state = env.state()
    return {
        "reset": reset.observation.echoed_message,
        "step": [step.observation.echoed_message, step.observation.message_length, step.reward],
        "state": [state.step_count, state.episode_id is not None],
    }


def _http(base_url: str, method: str, path: str, body: Any = None) -> list[Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return [response.status, json.loads(response.read())]
    except urllib.error.HTTPError as exc:
        return [exc.code, json.loads(exc.read() or b"null")]


def http(base_url: str) -> dict[str, Any]:
    return {
        "health": _http(base_url, "GET", "/health"),
        "reset": _http(base_url, "POST", "/reset", {}),
        "reset_seeded": _http(base_url, "POST", "/reset", {"seed": 1, "episode_id": "e1"}),
        "step": _http(base_url, "POST", "/step", {"action": {"message": "hi"}}),
        "step_missing_field": _http(base_url, "POST", "/step", {"action": {}}),
        "step_no_action": _http(base_url, "POST", "/step", {}),
        "state": _http(base_url, "GET", "/state"),
        "schema": _http(base_url, "GET", "/schema"),
        "metadata": _http(base_url, "GET", "/metadata"),
    }


async def errors(base_url: str) -> dict[str, Any]:
    replies: dict[str, Any] = {}
    async with connect(base_url.replace("http", "ws") + "/ws") as ws:
        for name, frame in [
            ("not_json", "nope"),
            ("unknown_type", json.dumps({"type": "jump"})),
            ("extra_field", json.dumps({"type": "reset", "data": {}, "id": 1})),
            ("bad_action", json.dumps({"type": "step", "data": {"message": 7}})),
            ("reset", json.dumps({"type": "reset", "data": {}})),
        ]:
            await ws.send(frame)
            reply = json.loads(await ws.recv())
            replies[name] = [reply["type"], reply["data"].get("code")]
        await ws.send(json.dumps({"type": "close"}))
        try:
            extra = await asyncio.wait_for(ws.recv(), 5)
            replies["after_close"] = extra
        except Exception as exc:  # the server closes without a reply
            replies["after_close"] = type(exc).__name__
        replies["close_code"] = ws.close_code
    return replies


def validate(base_url: str) -> dict[str, Any]:
    """Upstream's own runtime validator (``openenv validate --url``)."""
    from openenv.cli._validation import validate_running_environment

    report = validate_running_environment(base_url, timeout_s=30)
    failed = [c for c in report.get("criteria", []) if not c.get("passed")]
    return {"passed": report.get("passed"), "mode": report.get("mode"), "failed": failed}


async def metadata(base_url: str) -> dict[str, Any]:
    async with GenericEnvClient(base_url=base_url) as env:
        await env.reset()
        step = await env.step({"message": "m"})
    return {"observation": step.observation, "metadata": getattr(step, "metadata", None)}


def autoenv(base_url: str) -> dict[str, Any]:
    from openenv import AutoEnv

    with AutoEnv.from_env("echo_env", base_url=base_url, skip_install=True).sync() as env:
        reset = env.reset()
        step = env.step({"message": "auto"})
    return {"client": type(env).__name__, "reset": reset.observation, "step": step.reward}


async def mcp(base_url: str) -> dict[str, Any]:
    from openenv.core.mcp_client import MCPToolClient

    async with MCPToolClient(base_url=base_url) as env:
        tools = await env.list_tools()
        echoed = await env.call_tool("echo_message", message="Hello from MCP")
        try:
            await env.call_tool("no_such_tool", message="x")
            missing = None
        except RuntimeError as exc:
            missing = str(exc)
        reset = await env.reset()
        state = await env.state()
    async with connect(base_url.replace("http", "ws") + "/ws") as ws:
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        await ws.send(json.dumps({"type": "mcp", "data": call}))
        listed = json.loads(await ws.recv())
    async with GenericEnvClient(base_url=base_url) as generic:
        await generic.reset()
        action = {"type": "call_tool", "tool_name": "echo_message", "arguments": {"message": "s"}}
        stepped = await generic.step(action)
    return {
        "tools": [[t.name, t.input_schema.get("required")] for t in tools],
        "echoed": echoed,
        "missing": missing,
        "reset_done": reset.done,
        "state_steps": state.step_count,
        "ws_tools": [
            [t["name"], sorted(t["inputSchema"].get("properties", {}))]
            for t in listed["data"]["result"]["tools"]
        ],
        "step_result": stepped.observation["result"]["data"],
        "step_error": stepped.observation["error"],
    }


async def mcp_terminal(base_url: str) -> dict[str, Any]:
    from openenv.core.mcp_client import MCPToolClient

    async with MCPToolClient(base_url=base_url) as env:
        tools = sorted(t.name for t in await env.list_tools())
        written = await env.call_tool("write_file", path="note.txt", content="from upstream\n")
        ran = await env.call_tool("exec", command="cat note.txt")
    return {"tools": tools, "written": written, "ran": ran}


def main() -> None:
    # One process runs every mode asked for: importing openenv-core takes seconds (gradio).
    modes, base_url = sys.argv[1].split(","), sys.argv[2]
    result: dict[str, Any] = {}
    for mode in modes:
        if mode == "generic":
            result[mode] = asyncio.run(generic(base_url))
        elif mode == "typed":
            result[mode] = typed(base_url)
        elif mode == "http":
            result[mode] = http(base_url)
        elif mode == "validate":
            result[mode] = validate(base_url)
        elif mode == "metadata":
            result[mode] = asyncio.run(metadata(base_url))
        elif mode == "autoenv":
            result[mode] = autoenv(base_url)
        elif mode == "mcp":
            result[mode] = asyncio.run(mcp(base_url))
        elif mode == "mcp_terminal":
            result[mode] = asyncio.run(mcp_terminal(base_url))
        else:
            result[mode] = asyncio.run(errors(base_url))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
