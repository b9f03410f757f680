"""Forking coding env sessions: the worker process is forked, so interpreter state carries over.

Through real server processes (``openenv serve envs.coding_env``), plus the fork server's
check that a worker cannot pass another process off as its fork.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from envs.coding_env import AsyncCodingEnv, CodeAction
from envs.coding_env.server.coding_environment import _FORK_SERVER, CodingEnvironment, _on_spawner
from openenv.providers import LocalProcessProvider
from openenv.providers.base import ServerHandle
from tests.envs import test_coding_env
from tests.envs.test_coding_env import (
    C_LOOP,
    SERVER_SETTINGS,
    _process_table,
    descendants,
    gone,
    in_process_fork_server,  # noqa: F401 - stops this module's in-process fork server
    one_process,
    still_running,
)

module_loop = pytest.mark.asyncio(loop_scope="module")
coding_server = test_coding_env.coding_server  # one server for the module (2 s step limit)


async def out(env: AsyncCodingEnv, code: str) -> str:
    observation = (await env.step(CodeAction(code=code))).observation
    assert observation.exit_code == 0, observation.stderr
    return observation.stdout


def parent_of(pid: int) -> int:
    return _process_table()[pid][0]


@module_loop
async def test_the_fork_starts_with_the_interpreter_state_then_each_goes_its_own_way(
    coding_server: ServerHandle,
) -> None:
    async with AsyncCodingEnv(coding_server.endpoint) as parent:
        await parent.reset(episode_id="tree")
        await out(parent, "x = 1\nimport math\ndef double(v):\n    return 2 * v\nseen = [x]")
        async with await parent.fork() as child:
            state = await child.state()
            assert (state.episode_id, state.step_count) == ("tree", 1)  # the episode goes on
            # Variables, functions and imports carried over.
            assert await out(child, "print(x, double(21), math.floor(2.5), seen)") == "1 42 2 [1]\n"
            # A change after the fork is seen by no one else, in either direction.
            await out(parent, "x = 2\nseen.append('parent')")
            await out(child, "x = 3\nseen.append('child')")
            assert await out(parent, "print(x, seen)") == "2 [1, 'parent']\n"
            assert await out(child, "print(x, seen)") == "3 [1, 'child']\n"
            # The random generator's state is part of the copy: both draw the same next number.
            draw = "import random\nrandom.random()"
            assert await out(parent, draw) == await out(child, draw)
            await out(child, "y = 'only in the child'")
            missing = (await parent.step(CodeAction(code="y"))).observation
            assert missing.exit_code == 1 and "NameError" in missing.stderr


@module_loop
async def test_the_fork_is_its_own_process_under_the_fork_server_and_outlives_its_parent(
    coding_server: ServerHandle,
) -> None:
    parent = AsyncCodingEnv(coding_server.endpoint)
    await parent.reset()
    await out(parent, "x = 'kept'")
    before = descendants(int(coding_server.id))
    child = await parent.fork()
    try:
        new = descendants(int(coding_server.id)) - before
        assert len(new) == 1  # one process: the fork's worker
        ((fork_pid, _),) = new
        fork_server = parent_of(fork_pid)
        assert parent_of(fork_server) == int(coding_server.id)  # a sibling of the first worker
        await parent.close()  # the parent's worker goes; the fork must not
        assert await gone(before - {(fork_server, _process_table()[fork_server][2])})
        assert await out(child, "print(x)") == "kept\n"
        await child.close()
        assert await gone(new), "closing the forked session did not end its worker"
    finally:
        await parent.close()
        await child.close()


@module_loop
async def test_a_fork_before_any_worker_gets_a_worker_of_its_own(
    coding_server: ServerHandle,
) -> None:
    async with AsyncCodingEnv(coding_server.endpoint) as parent:
        async with await parent.fork() as child:
            await child.reset()
            assert await out(child, "print(1 + 1)") == "2\n"


@module_loop
async def test_killing_the_server_kills_a_fork_stuck_in_c() -> None:
    provider = LocalProcessProvider("envs.coding_env", env=SERVER_SETTINGS)
    try:
        server = await provider.start()
        parent = AsyncCodingEnv(server.endpoint)
        await parent.reset()
        await out(parent, "x = 1")
        child = await parent.fork()
        tree = descendants(int(server.id))  # the fork server, the worker, the fork
        assert len(tree) == 3
        stuck = asyncio.create_task(child.step(CodeAction(code=C_LOOP)))
        await asyncio.sleep(0.3)
        await provider.kill(server)  # SIGKILL: no clean-up code runs in the server
        assert await gone(tree), "a fork outlived its server"
        with pytest.raises(Exception, match=r"closed|dropped|lost"):
            await stuck
        await parent.close()
        await child.close()
    finally:
        await provider.close()


@module_loop
async def test_the_fork_server_vouches_only_for_real_forks() -> None:
    env = CodingEnvironment()
    await env.reset()
    try:
        worker = env.worker_pid
        assert worker is not None
        # A worker naming the env server, an existing worker, or a process group is refused.
        for pid in (os.getpid(), worker, 0, -1, 1):
            assert not await _on_spawner(_FORK_SERVER.adopt, pid)
        twin = await env.fork()
        assert twin.worker_pid not in (None, worker)
        assert still_running(one_process(worker))
        await twin.close()
    finally:
        await env.close()
