"""terminal_env in its real container: the tasks, hostile input, and the container as the
boundary, shown by inspecting it (never by sending traffic anywhere).

One container serves the module; each test opens sessions of its own on it, so every hostile
test also shows that the server goes on serving the next one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from envs.terminal_env import (
    AsyncTerminalEnv,
    Evaluate,
    Exec,
    ReadFile,
    Start,
    TerminalEnv,
    WriteFile,
)
from envs.terminal_env.server.tasks import TASKS_DIR, task_names
from openenv.exceptions import EnvError
from openenv.providers.base import ServerHandle
from openenv.providers.docker import LocalDockerProvider
from tests.conftest import TERMINAL_IMAGE as IMAGE

module_loop = pytest.mark.asyncio(loop_scope="module")
pytestmark = [pytest.mark.usefixtures("docker_images"), pytest.mark.timeout(180)]

CAP = 64 * 1024  # the image's default output cap per stream


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def container() -> AsyncIterator[tuple[LocalDockerProvider, ServerHandle]]:
    provider = LocalDockerProvider(IMAGE)
    server = await provider.start()
    try:
        yield provider, server
    finally:
        await provider.close()
    assert server.id not in container_ids()  # gone, and every process with it


@pytest_asyncio.fixture(loop_scope="module")
async def env(
    container: tuple[LocalDockerProvider, ServerHandle],
) -> AsyncIterator[AsyncTerminalEnv]:
    async with AsyncTerminalEnv(container[1].endpoint) as client:
        await client.reset()
        yield client


async def run(client: AsyncTerminalEnv, command: str, **options: object):  # type: ignore[no-untyped-def]
    return (await client.step(Exec(command, **options))).observation  # type: ignore[arg-type]


async def processes(client: AsyncTerminalEnv) -> list[str]:
    """The command names of every process in the container but those ``ps`` needs."""
    listing = (await run(client, "ps -eo comm=")).stdout.split()
    return [name for name in listing if name not in ("ps",)]


async def assert_serving(container: tuple[LocalDockerProvider, ServerHandle]) -> None:
    async with AsyncTerminalEnv(container[1].endpoint) as other:
        await other.reset()
        assert (await run(other, "echo serving")).stdout == "serving\n"


# The tasks, through the sync client's own container.


def container_ids() -> str:
    done = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True)
    return done.stdout


def test_each_task_scores_one_solved_and_zero_untouched() -> None:
    with TerminalEnv.from_docker_image(IMAGE) as sync_env:
        for name in task_names():
            solved = (TASKS_DIR / name / "solution.sh").read_text()
            for commands, expected in ((solved, 1.0), (None, 0.0)):
                first = sync_env.reset(task=name)
                assert first.observation.instruction
                if commands is not None:
                    ran = sync_env.step(Exec(commands, timeout_s=60)).observation
                    assert ran.exit_code == 0, (name, ran.stderr)
                graded = sync_env.step(Evaluate()).observation
                assert graded.done and graded.reward == expected, (name, graded.stdout)
        sync_env.reset()
        names = sync_env.step(Exec("ps -eo comm=")).observation.stdout.split()
        assert names == ["docker-init", "openenv", "bash", "ps"]  # nothing left running
        (container_id,) = [
            line for line in container_ids().split() if line.startswith(hostname(sync_env))
        ]
    assert container_id not in container_ids()  # and the container is gone


def hostname(client: TerminalEnv) -> str:
    """The container's id prefix, as its hostname."""
    return client.step(Exec("hostname")).observation.stdout.strip()


# The shell, in the container.


@module_loop
async def test_shell_state_timeouts_and_truncation(env: AsyncTerminalEnv) -> None:
    await run(env, "cd /tmp && export KEPT=1 && f() { echo fn; }")
    assert (await run(env, "pwd; echo $KEPT; f")).stdout == "/tmp\n1\nfn\n"
    late = await run(env, "sleep 1000", timeout_s=0.5)
    assert late.timed_out and late.exit_code == 124
    assert (await run(env, "echo $KEPT")).stdout == "1\n"
    assert "sleep" not in await processes(env)
    big = await run(env, "head -c 1000000 /dev/urandom")
    assert big.truncated and len(big.stdout.encode()) >= CAP  # U+FFFD is 3 bytes


# Hostile input.


@module_loop
async def test_fork_bomb(
    env: AsyncTerminalEnv, container: tuple[LocalDockerProvider, ServerHandle]
) -> None:
    bomb = await run(env, ":(){ :|:& };:", timeout_s=5)
    assert bomb.exit_code is not None  # the shell answered while the bomb went on
    # The server answers throughout; builtins need no process; a new shell may find no free
    # process slot, and then says so.
    assert (await run(env, "echo still here")).stdout == "still here\n"
    async with AsyncTerminalEnv(container[1].endpoint) as other:
        try:
            await other.reset()
        except EnvError as exc:
            assert "no process slot is free" in str(exc)
    await env.reset()
    await assert_serving(container)
    assert await processes(env) == ["docker-init", "openenv", "bash"]
    assert (await run(env, "echo calm")).stdout == "calm\n"


@module_loop
async def test_yes_flood(env: AsyncTerminalEnv) -> None:
    flood = await run(env, "yes", timeout_s=2)
    assert flood.timed_out and flood.truncated
    assert flood.stdout == "y\n" * (CAP // 2)
    assert (await run(env, "echo after")).stdout == "after\n"
    assert "yes" not in await processes(env)


@module_loop
async def test_sleep_past_its_timeout(env: AsyncTerminalEnv) -> None:
    late = await run(env, "sleep 1000; echo never", timeout_s=1)
    assert late.timed_out and late.stdout == ""
    assert "sleep" not in await processes(env)
    assert (await run(env, "echo usable")).stdout == "usable\n"


@module_loop
async def test_background_processes_do_not_outlive_reset(env: AsyncTerminalEnv) -> None:
    await env.step(Start("sleep 1000"))
    await run(env, "sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 & setsid sleep 1003 &")
    await run(env, "(setsid bash -c 'sleep 1004 & disown' &)")
    # The last one starts on its own time: wait (bounded) until all five are up.
    up = await run(env, "until [ $(pgrep -c -x sleep) = 5 ]; do sleep 0.01; done", timeout_s=20)
    assert not up.timed_out
    await env.reset()
    assert await processes(env) == ["docker-init", "openenv", "bash"]


@module_loop
async def test_writing_outside_the_workspace_fails(env: AsyncTerminalEnv) -> None:
    for target in ("/etc/passwd", "/opt/openenv/bin/openenv", "/usr/bin/evil", "/evil"):
        denied = await run(env, f"echo x >> {target}")
        assert denied.exit_code == 1
        assert "Read-only file system" in denied.stderr or "Permission denied" in denied.stderr
        written = (await env.step(WriteFile(target, b"x"))).observation
        assert written.exit_code == 1 and written.error, target
    assert (await run(env, "echo ok > inside.txt && cat inside.txt")).stdout == "ok\n"


@module_loop
async def test_the_token_is_out_of_reach(env: AsyncTerminalEnv) -> None:
    assert "OPENENV_TOKEN" not in (await run(env, "env")).stdout
    server = await run(env, "cat /proc/$PPID/environ")
    assert server.exit_code == 1 and "Permission denied" in server.stderr
    mem = await run(env, "head -c 1 /proc/$PPID/mem")
    assert mem.exit_code == 1
    pid = (await run(env, "echo $PPID")).stdout.strip()
    for path in (f"/proc/{pid}/environ", "/proc/self/environ", "/dev/fd/0"):
        read = (await env.step(ReadFile(path))).observation
        assert read.exit_code == 1 and "server's own process files" in read.error, path


@module_loop
async def test_pid_1_does_not_show_the_token(env: AsyncTerminalEnv) -> None:
    """The provider hands the token over in a file the server reads and deletes, so the
    container's init process (same user as the shell) does not hold it in its environment."""
    environ = await run(env, "tr '\\0' '\\n' < /proc/1/environ")
    assert environ.exit_code == 0 and environ.stdout  # the shell can read it: the test bites
    assert "OPENENV_TOKEN=" not in environ.stdout


@pytest.mark.xfail(
    strict=True,
    reason="the server and the shells run as one user in the container, so the shell can signal "
    "the server (kill $PPID, pkill -f openenv); a separate user for the shells needs privilege "
    "the container does not have (known gap, see the README)",
)
def test_the_shell_cannot_kill_the_server() -> None:
    with TerminalEnv.from_docker_image(IMAGE) as victim:
        victim.reset()
        victim.step(Exec("kill -9 $PPID"))
        assert victim.step(Exec("echo survived")).observation.stdout == "survived\n"


@module_loop
async def test_filling_the_workspace_disk(env: AsyncTerminalEnv) -> None:
    full = await run(env, "dd if=/dev/zero of=big bs=1M count=4096", timeout_s=60)
    assert full.exit_code == 1 and "No space left on device" in full.stderr
    assert (await run(env, "echo still")).stdout == "still\n"
    await env.reset()
    free = await run(env, "df --output=avail -B1M /tmp | tail -1")
    assert int(free.stdout) > 32


@module_loop
async def test_a_memory_hog_is_killed_not_the_server(
    env: AsyncTerminalEnv, container: tuple[LocalDockerProvider, ServerHandle]
) -> None:
    assert (await run(env, "cat /proc/$$/oom_score_adj")).stdout == "500\n"
    hog = await run(env, "python3 -c 'x = bytearray(900 << 20); print(len(x))'", timeout_s=60)
    assert hog.exit_code == 137 and hog.stdout == ""  # the OOM killer's SIGKILL
    assert (await run(env, "echo alive")).stdout == "alive\n"
    await assert_serving(container)


@module_loop
async def test_closing_stdout_and_changing_the_terminal(env: AsyncTerminalEnv) -> None:
    assert (await run(env, "exec >&- 2>&-; echo lost")).exit_code == 1
    assert (await run(env, "exec 0<&-; stty raw -echo -F /dev/tty; echo ok")).stdout == "ok\n"
    assert (await run(env, "echo fine")).stdout == "fine\n"


# The container is the boundary: inspected, never probed with traffic.


@module_loop
async def test_isolation_seen_from_inside(env: AsyncTerminalEnv) -> None:
    interfaces = (await run(env, "ls /sys/class/net")).stdout.split()
    assert interfaces == ["lo"]
    identity = (await run(env, "id -u; grep CapEff /proc/self/status")).stdout.split()
    assert identity[0] == "65534" and identity[-1] == "0000000000000000"
    limits = await run(
        env,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us",
    )
    memory, pids, quota, period = limits.stdout.split()
    assert (int(memory), int(pids), int(quota) / int(period)) == (512 << 20, 256, 1.0)
    mounts = (await run(env, "grep -E ' (/|/tmp) ' /proc/mounts")).stdout
    assert " / overlay ro," in mounts and " /tmp tmpfs rw," in mounts


@module_loop
async def test_isolation_seen_from_the_host(
    container: tuple[LocalDockerProvider, ServerHandle],
) -> None:
    done = subprocess.run(
        ["docker", "inspect", container[1].id], capture_output=True, text=True, check=True
    )
    (info,) = json.loads(done.stdout)
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert (host["Memory"], host["PidsLimit"], host["NanoCpus"]) == (512 << 20, 256, 10**9)
    assert info["Config"]["User"] == "65534:65534"
