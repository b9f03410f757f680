"""The echo image offers the echo_message tool beside its typed action, over our wire and to
upstream OpenEnv's MCP clients' JSON-RPC on /mcp."""

from __future__ import annotations

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from tests.conftest import ECHO_IMAGE

pytestmark = [pytest.mark.usefixtures("docker_images"), pytest.mark.timeout(120)]


async def test_the_echo_image_offers_echo_message() -> None:
    env = await AsyncEchoEnv.from_docker_image(ECHO_IMAGE)
    try:
        (tool,) = await env.list_tools()
        assert (tool.name, tool.input_schema["required"]) == ("echo_message", ["message"])
        await env.reset()
        assert (await env.step(EchoAction(message="typed"))).observation.echoed_message == "typed"
        called = await env.call_tool("echo_message", message="a tool")
        assert called.observation.result == "a tool"
        assert (await env.state()).step_count == 2
    finally:
        await env.close()
