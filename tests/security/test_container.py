"""The token inside a container: not in any process's environment there, where the env's own
user (every process in the container runs as it) could read it from /proc."""

from __future__ import annotations

import subprocess

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv.providers.docker import LocalDockerProvider
from tests.conftest import ECHO_IMAGE

pytestmark = [pytest.mark.usefixtures("docker_images"), pytest.mark.timeout(180)]


async def test_no_process_in_the_container_has_the_token_in_its_environment() -> None:
    async with LocalDockerProvider(ECHO_IMAGE) as provider:
        server = await provider.start()
        token = server.endpoint.token
        assert token
        async with AsyncEchoEnv(server.endpoint) as env:
            await env.reset()
            assert (await env.step(EchoAction(message="hi"))).observation.echoed_message == "hi"
        # As the container's user (the env's code runs as it): every /proc/*/environ it may
        # read (init's included), and the token file, gone once the server read it.
        script = "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'; ls /run/openenv"
        done = subprocess.run(
            ["docker", "exec", server.id, "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "PATH=" in done.stdout  # init's environment was read
        assert token not in done.stdout
        assert "token" not in done.stdout.split("\n")[-5:], done.stdout[-300:]
