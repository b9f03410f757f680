"""coding_env in real containers: the episode, hostile code, and the container as the boundary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from envs.coding_env import AsyncCodingEnv, CodeAction
from tests.conftest import CODING_IMAGE as IMAGE

pytestmark = pytest.mark.usefixtures("docker_images")

LIMIT_S = 2.0
SETTINGS = {"OPENENV_CODING_TIMEOUT": str(LIMIT_S)}


async def run(env: AsyncCodingEnv, code: str) -> tuple[int, str, str]:
    observation = (await env.step(CodeAction(code=code))).observation
    return observation.exit_code, observation.stdout, observation.stderr


@pytest.fixture
async def container() -> AsyncIterator[AsyncCodingEnv]:
    async with await AsyncCodingEnv.from_docker_image(IMAGE, env=SETTINGS) as env:
        await env.reset()
        yield env


async def test_three_step_episode_then_reset_forgets(container: AsyncCodingEnv) -> None:
    assert await run(container, "x = 41") == (0, "", "")
    assert await run(container, "print(x + 1)") == (0, "42\n", "")
    code, _, stderr = await run(container, "1/0")
    assert code == 1 and "ZeroDivisionError: division by zero" in stderr
    await container.reset()
    code, _, stderr = await run(container, "print(x)")
    assert code == 1 and "NameError" in stderr


HOSTILE = {
    "c_loop": "sum(range(10**15))",
    "python_loop": "while True:\n    pass",
    "memory_bomb": "x = []\nwhile True:\n    x.append(' ' * (64 * 1024 * 1024))",
    "processes": "import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 100'])",
    "threads": "import threading\nfor _ in range(10**6):\n"
    "    threading.Thread(target=input).start()",
    "network": "import socket\nsocket.create_connection(('127.0.0.1', 80))",
    "write_outside_scratch": "open('/usr/lib/evil', 'w').write('x')",
    "read_shadow": "print(open('/etc/shadow').read())",
    "import_os": "import os\nos.system('id')",
    "import_ctypes": "import ctypes\nctypes.CDLL(None)",
    "print_100_mb": "print('x' * 100_000_000)",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_code_gets_a_clear_answer_in_time_and_harms_nothing(
    name: str, container: AsyncCodingEnv
) -> None:
    async with await AsyncCodingEnv.from_docker_image(IMAGE, env=SETTINGS) as bystander:
        await bystander.reset()
        stop = asyncio.Event()

        async def keep_working() -> int:
            steps = 0
            while not stop.is_set():
                assert await run(bystander, "print(6 * 7)") == (0, "42\n", "")
                steps += 1
                await asyncio.sleep(0.01)
            return steps

        other = asyncio.create_task(keep_working())
        started = time.monotonic()
        code, stdout, stderr = await run(container, HOSTILE[name])
        elapsed = time.monotonic() - started
        stop.set()
        assert await other > 0  # the other container kept answering throughout
    assert elapsed < LIMIT_S + 3.0, f"{name} took {elapsed:.1f} s"
    if name == "print_100_mb":
        assert code == 0 and "[output truncated:" in stdout and len(stdout) < 100_000
    else:
        assert code == 1 and stderr, (name, stdout, stderr)
    assert await run(container, "print('still usable')") == (0, "still usable\n", "")


async def test_the_container_is_the_boundary_when_the_interpreter_lets_code_through() -> None:
    # Authorise what the interpreter would refuse, and show the sandbox holding anyway.
    settings = {**SETTINGS, "OPENENV_CODING_AUTHORIZED_IMPORTS": "os,socket"}
    async with await AsyncCodingEnv.from_docker_image(IMAGE, env=settings) as env:
        await env.reset()
        code, _, stderr = await run(env, "import os\nos.open('/etc/shadow', os.O_RDONLY)")
        assert code == 1 and "Permission denied" in stderr
        code, _, stderr = await run(
            env, "import os\nos.open('/usr/evil', os.O_CREAT | os.O_WRONLY)"
        )
        assert code == 1 and "Read-only file system" in stderr
        assert (await run(env, "import os\nos.open('/tmp/ok', os.O_CREAT | os.O_WRONLY)"))[0] == 0
        assert await run(env, "import os\nprint(os.getuid())") == (0, "65534\n", "")
        assert await run(env, "import socket\nprint(socket.if_nameindex())") == (
            0,
            "[(1, 'lo')]\n",
            "",
        )
        code, _, stderr = await run(
            env, "import socket\nsocket.create_connection(('127.0.0.1', 9), 1)"
        )
        assert code == 1 and "Connection refused" in stderr


async def test_a_fork_in_a_container_carries_the_interpreter_state(
    container: AsyncCodingEnv,
) -> None:
    # The sandbox (non-root, no capabilities, read-only root, pids limit) still lets the
    # worker fork itself, and the fork server adopt the copy.
    assert await run(container, "import math\nx = 1") == (0, "", "")
    async with await container.fork() as child:
        assert await run(child, "print(x, math.pi > 3)") == (0, "1 True\n", "")
        assert await run(container, "x = 2") == (0, "", "")
        assert await run(child, "print(x)") == (0, "1\n", "")
        assert await run(child, "x = 3") == (0, "", "")
    assert await run(container, "print(x)") == (0, "2\n", "")
