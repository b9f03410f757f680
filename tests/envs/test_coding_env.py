"""The coding env: its episode, parity with smolagents' own executor, limits and hostile code.

Hostile code runs through real server processes (``openenv serve envs.coding_env``); unit
checks drive :class:`CodingEnvironment` directly. All async tests share one module event loop
so that one server can serve the whole module.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from envs.coding_env import AsyncCodingEnv, CodeAction, CodeObservation, CodeState, CodingEnv
from envs.coding_env.server.coding_environment import (
    IMPORTS_VAR,
    TIMEOUT_VAR,
    CodingEnvironment,
    stop_fork_server,
)
from envs.coding_env.server.worker import default_authorized_imports
from openenv import procfs
from openenv.providers import LocalProcessProvider
from openenv.providers.base import ServerHandle
from openenv.testing import check_env
from tests.envs.coding_corpus import CORPUS

module_loop = pytest.mark.asyncio(loop_scope="module")

SERVER_TIMEOUT_S = 2.0
SERVER_SETTINGS = {
    "OPENENV_CODING_TIMEOUT": str(SERVER_TIMEOUT_S),
    "OPENENV_CODING_MEMORY_LIMIT_MB": "512",
}
MARGIN_S = 8.0  # kill, reap and respawn on a loaded 2-core machine (10x slower than quiet)
C_LOOP = "sum(range(10**15))"  # hours of C code holding the GIL: only a kill stops it


# Processes.


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = procfs.stat_fields(int(stat.parent.name))
        if fields is not None:
            table[int(stat.parent.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of the live processes below ``root``."""
    table = _process_table()
    found: set[tuple[int, str]] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier}
        found |= {(pid, table[pid][2]) for pid in children if table[pid][1] != "Z"}
        frontier = children
    return found


def still_running(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    table = _process_table()
    return {
        (pid, start)
        for pid, start in processes
        if pid in table and table[pid][2] == start and table[pid][1] != "Z"
    }


def one_process(pid: int) -> set[tuple[int, str]]:
    return {(pid, _process_table()[pid][2])}


async def gone(processes: set[tuple[int, str]], within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while still_running(processes):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# Fixtures and helpers.


@pytest.fixture(scope="module", autouse=True)
def in_process_fork_server() -> Iterator[None]:
    """Unit tests fork workers from a fork server of this process: stop it at the end."""
    yield
    mark = "coding_env.server.fork_server"
    ours = {p for p in descendants(os.getpid()) if mark in _cmdline(p[0])}
    stop_fork_server()
    deadline = time.monotonic() + 5
    while still_running(ours) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not still_running(ours), "fork servers or workers outlived the tests"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def coding_server() -> AsyncIterator[ServerHandle]:
    """One coding server for the module (2 s step limit, 512 MB per worker)."""
    provider = LocalProcessProvider("envs.coding_env", env=SERVER_SETTINGS)
    server = await provider.start()
    try:
        yield server
    finally:
        tree = descendants(int(server.id))
        await provider.close()
        assert await gone(tree), "fork server or workers outlived their server"


@pytest_asyncio.fixture(loop_scope="module")
async def session(coding_server: ServerHandle) -> AsyncIterator[AsyncCodingEnv]:
    async with AsyncCodingEnv(coding_server.endpoint) as env:
        await env.reset()
        yield env


async def run(env: AsyncCodingEnv | CodingEnvironment, code: str) -> CodeObservation:
    if isinstance(env, CodingEnvironment):
        return await env.step(CodeAction(code=code))
    return (await env.step(CodeAction(code=code))).observation


def marker(omitted: int) -> str:
    return f"\n... [output truncated: {omitted} bytes omitted]"


# The episode.


@module_loop
async def test_three_step_episode_through_a_server_process() -> None:
    async with await AsyncCodingEnv.from_process() as env:
        assert env.hello is not None and env.hello.env == "coding_env"
        assert (await env.reset()).observation == CodeObservation(reward=0.0)
        first = await env.step(CodeAction(code="x = 41"))
        assert (first.observation.stdout, first.observation.exit_code, first.reward) == (
            "",
            0,
            1.0,
        )
        second = await env.step(CodeAction(code="print(x + 1)"))
        assert second.observation == CodeObservation(stdout="42\n", reward=1.0)
        third = await env.step(CodeAction(code="1/0"))
        assert third.observation.exit_code == 1 and third.reward == 0.0
        assert "ZeroDivisionError: division by zero" in third.observation.stderr
        assert "'1/0'" in third.observation.stderr  # the offending statement
        assert await env.state() == CodeState(
            episode_id=(await env.state()).episode_id, step_count=3, last_exit_code=1
        )
        await env.reset()
        after = await run(env, "x")
        assert after.exit_code == 1
        assert "NameError" in after.stderr and "`x`" in after.stderr


@module_loop
async def test_episode_and_worker_lifecycle_on_the_env_directly() -> None:
    env = CodingEnvironment()
    try:
        await env.reset(episode_id="e1")
        pid = env.worker_pid
        assert pid is not None
        await env.reset()  # a worker that ran no code is kept
        assert env.worker_pid == pid
        assert (await run(env, "x = 41")).exit_code == 0
        assert (await run(env, "print(x + 1)")).stdout == "42\n"
        failed = await run(env, "1/0")
        assert failed.exit_code == 1 and "ZeroDivisionError" in failed.stderr
        assert env.state == CodeState(
            episode_id=env.state.episode_id, step_count=3, last_exit_code=1
        )
        old = one_process(pid)
        await env.reset()  # a used worker is replaced: nothing of the episode survives
        assert env.worker_pid != pid and await gone(old)
        assert "NameError" in (await run(env, "x")).stderr
        assert env.state.step_count == 1
    finally:
        await env.close()


def test_coding_environment_passes_the_env_checker() -> None:
    # The checker drives the env with one asyncio.run per call: the env binds to no loop.
    actions = [CodeAction(code="x = 1"), CodeAction(code="print(x)"), CodeAction(code="1/0")]
    check_env(CodingEnvironment, actions=actions)


def test_sync_client(coding_server: ServerHandle) -> None:
    with CodingEnv(coding_server.endpoint) as env:
        env.reset(seed=0)
        env.step(CodeAction(code="x = 41"))
        result = env.step(CodeAction(code="print(x + 1)"))
        assert (result.observation.stdout, result.reward) == ("42\n", 1.0)
        assert env.state().last_exit_code == 0


# Parity with smolagents' own executor.


def _reference(steps: list[str]) -> list[tuple[str, str, int]]:
    """Runs ``steps`` in smolagents' LocalPythonExecutor and maps its results by the README's
    rules: stdout = logs + repr(output) if the last statement is a (non-None) expression;
    stderr = the error message (undefined name relabelled NameError) + newline."""
    from smolagents.local_python_executor import (
        InterpreterError,
        LocalPythonExecutor,
        PrintContainer,
    )

    imports = default_authorized_imports()
    executor = LocalPythonExecutor(additional_authorized_imports=imports)
    # The same list in the same order (smolagents' own order, a set's, varies from run to run
    # and shows in its "Authorized imports are: [...]" message).
    executor.authorized_imports = imports
    executor.send_tools({})
    outcomes = []
    for code in steps:
        executor.state["_print_outputs"] = PrintContainer()  # only this step's prints
        try:
            result = executor(code)
        except BaseException as exc:
            if isinstance(exc, InterpreterError):
                message = re.sub(
                    r"due to: InterpreterError: (The variable `[^`]*` is not defined\.)$",
                    r"due to: NameError: \1",
                    str(exc),
                )
            else:
                message = f"{type(exc).__name__}: {exc}"
            outcomes.append((str(executor.state["_print_outputs"]), message + "\n", 1))
            continue
        stdout = result.logs
        if result.output is not None and isinstance(ast.parse(code).body[-1], ast.Expr):
            stdout += repr(result.output) + "\n"
        outcomes.append((stdout, "", 0))
    return outcomes


def _masked(outcomes: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Object addresses differ between two runs: mask them."""
    address = re.compile(r" at 0x[0-9a-f]+")
    return [
        (address.sub(" at 0x?", out), address.sub(" at 0x?", err), code)
        for out, err, code in outcomes
    ]


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 30
    assert sum(len(steps) > 1 for steps in CORPUS.values()) >= 5


@module_loop
@pytest.mark.parametrize("name", sorted(CORPUS))
async def test_corpus_matches_smolagents(name: str, session: AsyncCodingEnv) -> None:
    steps = CORPUS[name]
    got = []
    for code in steps:
        observation = await run(session, code)
        got.append((observation.stdout, observation.stderr, observation.exit_code))
    expected = _reference(steps)
    assert _masked(got) == _masked(expected)


# Limits, on the env directly.


@module_loop
async def test_output_is_truncated_with_a_marker() -> None:
    env = CodingEnvironment(max_output_bytes=100)
    try:
        await env.reset()
        assert (await run(env, 'print("a" * 150)')).stdout == "a" * 100 + marker(51)
        # UTF-8 bytes, never half a character: 60 x 2 bytes + newline.
        assert (await run(env, 'print("é" * 60)')).stdout == "é" * 50 + marker(21)
        # Prints, then the final expression's repr, share the limit.
        both = await run(env, 'print("x" * 90)\n"y" * 20')
        assert both.stdout == "x" * 90 + "\n'yyyyyyyy" + marker(91 + 23 - 100)
        lines = await run(env, "for i in range(1000):\n    print(i)")
        total = sum(len(str(i)) + 1 for i in range(1000))
        assert lines.stdout == "".join(f"{i}\n" for i in range(1000))[:100] + marker(total - 100)
        error = await run(env, 'raise ValueError("z" * 500)')
        assert error.exit_code == 1 and error.stderr.startswith("Code execution failed")
        assert error.stderr.endswith("bytes omitted]") and len(error.stderr) < 200
        assert (await run(env, 'print("\\ud800")')).stdout == "\\ud800\n"  # sent escaped
    finally:
        await env.close()


@module_loop
async def test_timeout_kills_the_worker_and_the_next_step_gets_a_fresh_one() -> None:
    env = CodingEnvironment(timeout_s=0.5)
    try:
        await env.reset()
        await run(env, "kept = 1")
        pid = env.worker_pid
        assert pid is not None
        old = one_process(pid)
        started = time.monotonic()
        stuck = await run(env, C_LOOP)
        assert time.monotonic() - started < 0.5 + MARGIN_S
        assert stuck.exit_code == 1 and stuck.reward == 0.0
        assert "TimeoutError: the step exceeded the 0.5 s time limit" in stuck.stderr
        assert "state" in stuck.stderr and stuck.metadata == {"interpreter_restarted": True}
        assert await gone(old)
        assert (await run(env, "print('alive')")).stdout == "alive\n"
        assert "NameError" in (await run(env, "kept")).stderr
    finally:
        await env.close()


@module_loop
async def test_a_worker_killed_from_outside_is_reported_and_replaced() -> None:
    env = CodingEnvironment()
    try:
        await env.reset()
        await run(env, "x = 1")
        assert env.worker_pid is not None
        os.kill(env.worker_pid, signal.SIGKILL)
        died = await run(env, "x")
        assert died.exit_code == 1
        assert "WorkerDied" in died.stderr and "killed by signal 9 (SIGKILL)" in died.stderr
        assert (await run(env, "print(2)")).stdout == "2\n"
    finally:
        await env.close()


@module_loop
async def test_a_cancelled_step_kills_its_worker() -> None:
    env = CodingEnvironment()
    try:
        await env.reset()
        await run(env, "x = 1")
        assert env.worker_pid is not None
        old = one_process(env.worker_pid)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run(env, C_LOOP), 0.3)
        assert await gone(old)
        assert (await run(env, "print(3)")).stdout == "3\n"
    finally:
        await env.close()


@module_loop
async def test_workers_die_with_their_env() -> None:
    closed = CodingEnvironment()
    await closed.reset()
    assert closed.worker_pid is not None
    worker = one_process(closed.worker_pid)
    await closed.close()
    assert not still_running(worker)  # close() waits for the exit
    assert closed.worker_pid is None

    dropped = CodingEnvironment()
    await dropped.reset()
    assert dropped.worker_pid is not None
    worker = one_process(dropped.worker_pid)
    del dropped
    gc.collect()
    assert await gone(worker)  # its handle's finalizer killed it


@module_loop
async def test_reward_fn_and_seed() -> None:
    def stdout_length(action: CodeAction, observation: CodeObservation) -> float:
        return float(len(observation.stdout))

    env = CodingEnvironment(reward_fn=stdout_length)
    try:
        await env.reset()
        assert (await run(env, 'print("abc")')).reward == 4.0
        draws = []
        for seed in (7, 7, 8):
            await env.reset(seed=seed)
            draws.append((await run(env, "import random\nrandom.random()")).stdout)
        assert draws[0] == draws[1] != draws[2]
    finally:
        await env.close()


@module_loop
async def test_authorized_imports_are_the_complete_list(monkeypatch: pytest.MonkeyPatch) -> None:
    env = CodingEnvironment(authorized_imports=["math"])
    try:
        await env.reset()
        assert (await run(env, "import math\nmath.floor(2.5)")).stdout == "2\n"
        for module in ("json", "time"):  # time is in smolagents' base list, not in ours
            refused = await run(env, f"import {module}")
            assert f"Import of {module} is not allowed" in refused.stderr
    finally:
        await env.close()
    monkeypatch.setenv(IMPORTS_VAR, " json, math ")
    assert CodingEnvironment().authorized_imports == ("json", "math")
    with pytest.raises(ValueError, match="not installed"):
        CodingEnvironment(authorized_imports=["no_such_module_anywhere"])
    monkeypatch.setenv(TIMEOUT_VAR, "soon")
    with pytest.raises(ValueError, match=TIMEOUT_VAR):
        CodingEnvironment()


# Hostile code through a real server.


@module_loop
async def test_infinite_loop_returns_in_time_and_the_session_recovers(
    session: AsyncCodingEnv,
) -> None:
    started = time.monotonic()
    # A for loop: smolagents caps while loops at 10**6 iterations, which could end a while
    # loop before our limit does; nothing but our limit ends this one.
    looped = await run(session, "for i in range(10**12):\n    pass")
    assert time.monotonic() - started < SERVER_TIMEOUT_S + MARGIN_S
    assert looped.exit_code == 1
    assert f"TimeoutError: the step exceeded the {SERVER_TIMEOUT_S:g} s time limit" in looped.stderr
    assert (await run(session, "print('alive')")).stdout == "alive\n"


@module_loop
async def test_a_stuck_session_does_not_slow_another(
    coding_server: ServerHandle, session: AsyncCodingEnv
) -> None:
    async with AsyncCodingEnv(coding_server.endpoint) as other:
        await other.reset()
        started = time.monotonic()
        stuck = asyncio.create_task(run(session, C_LOOP))
        await asyncio.sleep(0.2)
        for i in range(5):
            assert (await run(other, f"print({i})")).stdout == f"{i}\n"
        # Had the stuck session held the other up, it would have ended (killed at the time
        # limit) before these steps did.
        assert not stuck.done()
        observation = await stuck
        assert time.monotonic() - started < SERVER_TIMEOUT_S + MARGIN_S
        assert observation.exit_code == 1 and "TimeoutError" in observation.stderr
        assert (await run(session, "print('alive')")).stdout == "alive\n"


@module_loop
@pytest.mark.parametrize(
    "code",
    [
        "[0] * 10**10",  # one huge allocation
        # growth, in chunks large enough to pass the 512 MB limit within a few allocations
        # even on a loaded machine (the 2 s time limit must not come first)
        'chunks = []\nwhile True:\n    chunks.append("x" * (200 * 2**20))',
    ],
    ids=["huge", "growing"],
)
async def test_memory_bomb(session: AsyncCodingEnv, code: str) -> None:
    await run(session, "kept = 1")
    bomb = await run(session, code)
    assert bomb.exit_code == 1
    assert "MemoryError" in bomb.stderr and "ran out of memory (limit: 512 MB)" in bomb.stderr
    assert bomb.metadata == {"interpreter_restarted": True}
    assert "NameError" in (await run(session, "kept")).stderr  # a fresh interpreter
    assert (await run(session, "print('alive')")).stdout == "alive\n"


@module_loop
@pytest.mark.parametrize(
    "code",
    [
        "import os",
        "import subprocess",
        "import ctypes",
        "import sys",
        "import shutil",
        "import multiprocessing",
        "import importlib",
        "from os import system",
        "import io",
        "import pathlib",
    ],
)
async def test_unauthorized_imports_are_refused(session: AsyncCodingEnv, code: str) -> None:
    refused = await run(session, code)
    module = code.split()[1]
    assert refused.exit_code == 1
    assert re.search(f"Import (of|from) {module} is not allowed", refused.stderr)


@module_loop
async def test_no_connection_to_localhost(session: AsyncCodingEnv) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = f'import socket\nsocket.create_connection(("127.0.0.1", {port}))'
        refused = await run(session, code)
        assert refused.exit_code == 1
        assert "Import of socket is not allowed" in refused.stderr
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()


@module_loop
async def test_reading_files_is_refused(session: AsyncCodingEnv) -> None:
    shadow = await run(session, 'open("/etc/shadow").read()')
    assert shadow.exit_code == 1
    assert "Forbidden function evaluation: 'open'" in shadow.stderr
    for sneaky in ('__builtins__["open"]("/etc/shadow")', 'getattr(__builtins__, "open")'):
        assert (await run(session, sneaky)).exit_code == 1


@module_loop
async def test_printing_100_mb_is_truncated_and_fast(session: AsyncCodingEnv) -> None:
    started = time.monotonic()
    printed = await run(session, 'print("x" * 100_000_000)')
    assert printed.exit_code == 0
    assert printed.stdout == "x" * 65536 + marker(100_000_001 - 65536)
    shown = await run(session, '"y" * 50_000_000')  # a huge final expression
    assert shown.stdout.startswith("'yyy") and shown.stdout.endswith("bytes omitted]")
    assert time.monotonic() - started < SERVER_TIMEOUT_S + MARGIN_S


@module_loop
async def test_killing_the_server_kills_a_worker_stuck_in_c() -> None:
    provider = LocalProcessProvider("envs.coding_env")
    try:
        server = await provider.start()
        env = AsyncCodingEnv(server.endpoint)
        await env.reset()
        await run(env, "x = 1")
        tree = descendants(int(server.id))  # the fork server and the worker
        assert len(tree) == 2
        stuck = asyncio.create_task(run(env, C_LOOP))
        await asyncio.sleep(0.3)
        await provider.kill(server)  # SIGKILL: no clean-up code runs in the server
        assert await gone(tree), "a worker outlived its server"
        with pytest.raises(Exception, match=r"closed|dropped|lost"):
            await stuck
        await env.close()
    finally:
        await provider.close()
