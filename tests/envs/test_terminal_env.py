"""The terminal env on a real local server (``openenv serve envs.terminal_env``): the
persistent shell, files, background processes, time-outs, truncation, reset, and the
project's adapters (EnvPool, Gymnasium). The container and hostile input are in
``test_terminal_env_docker.py``; the tasks in ``test_terminal_tasks.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from envs.terminal_env import (
    AsyncTerminalEnv,
    Evaluate,
    Exec,
    Kill,
    ListDir,
    Poll,
    ReadFile,
    Start,
    TerminalAction,
    TerminalEnv,
    WriteFile,
)
from envs.terminal_env.server.shell import quote
from openenv import procfs
from openenv.exceptions import EnvError, NotSupportedError
from openenv.launch import EnvPool
from openenv.providers import LocalProcessProvider

module_loop = pytest.mark.asyncio(loop_scope="module")
pytestmark = pytest.mark.timeout(60)

SETTINGS = {"OPENENV_TERMINAL_MAX_OUTPUT_BYTES": "4096"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[LocalProcessProvider]:
    provider = LocalProcessProvider("envs.terminal_env", env=SETTINGS)
    try:
        yield provider
    finally:
        await provider.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def endpoint(server: LocalProcessProvider) -> object:
    return (await server.start()).endpoint


@pytest_asyncio.fixture(loop_scope="module")
async def env(endpoint: object) -> AsyncIterator[AsyncTerminalEnv]:
    async with AsyncTerminalEnv(endpoint) as client:  # type: ignore[arg-type]
        await client.reset()
        yield client


async def run(client: AsyncTerminalEnv, command: str, **options: object):  # type: ignore[no-untyped-def]
    return (await client.step(Exec(command, **options))).observation  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    return not procfs.is_running(pid)


@module_loop
async def test_shell_state_persists(env: AsyncTerminalEnv) -> None:
    await run(env, "mkdir -p sub && cd sub && export GREETING=hi && shout() { echo ${1^^}; }")
    await run(env, "alias ll='echo listing'; declare -i COUNT=41; COUNT+=1")
    seen = await run(env, "pwd; echo $GREETING; shout $GREETING; ll; echo $COUNT")
    workspace = (await env.state()).workspace
    assert seen.stdout == f"{workspace}/sub\nhi\nHI\nlisting\n42\n"
    assert seen.cwd == f"{workspace}/sub"
    assert seen.exit_code == 0


@module_loop
async def test_stdout_stderr_and_exit_code_are_apart(env: AsyncTerminalEnv) -> None:
    seen = await run(env, "echo out; echo err >&2; (exit 3)")
    assert (seen.stdout, seen.stderr, seen.exit_code) == ("out\n", "err\n", 3)
    assert seen.duration_ms > 0
    missing = await run(env, "no-such-command-here")
    assert missing.exit_code == 127 and "not found" in missing.stderr


@module_loop
async def test_commands_keep_every_byte_and_quote(env: AsyncTerminalEnv) -> None:
    command = "printf '%s|' \"it's\" '\"q\"' $'t\\tab' '!!' '$HOME' 'é'; echo"
    seen = await run(env, command)
    assert seen.stdout == 'it\'s|"q"|t\tab|!!|$HOME|é|\n'
    multi = await run(env, "for i in 1 2; do\n  echo line $i\ndone\ncat <<'EOF'\nheredoc\nEOF")
    assert multi.stdout == "line 1\nline 2\nheredoc\n"
    assert quote("a'b\n") == "$'a\\x27b\\x0a'"


@module_loop
async def test_undecodable_output_is_replaced(env: AsyncTerminalEnv) -> None:
    seen = await run(env, "printf 'ok\\xff\\xfe!'; printf '\\x80' >&2")
    assert seen.stdout == "ok\ufffd\ufffd!" and seen.stderr == "\ufffd"


@module_loop
async def test_output_is_capped_and_flagged(env: AsyncTerminalEnv) -> None:
    seen = await run(env, "head -c 100000 /dev/zero | tr '\\0' a; echo tail >&2")
    assert seen.stdout == "a" * 4096
    assert seen.truncated and seen.stderr == "tail\n" and seen.exit_code == 0
    small = await run(env, "echo small")
    assert not small.truncated


@module_loop
async def test_a_timeout_kills_the_job_and_keeps_the_shell(env: AsyncTerminalEnv) -> None:
    await run(env, "export KEPT=yes; cd /")
    seen = await run(env, "echo started; sleep 1000; echo never", timeout_s=0.5)
    assert seen.timed_out and seen.exit_code == 124
    assert seen.stdout == "started\n"
    assert (await run(env, "echo $KEPT; pwd")).stdout == "yes\n/\n"
    assert not (await run(env, "pgrep -x sleep -s 0")).stdout  # nothing left in the session


@module_loop
async def test_a_timeout_interrupts_a_builtin_loop(env: AsyncTerminalEnv) -> None:
    await run(env, "export KEPT=loop")
    seen = await run(env, "while :; do :; done", timeout_s=0.3)
    assert seen.timed_out and not seen.metadata
    assert (await run(env, "echo $KEPT")).stdout == "loop\n"


@module_loop
async def test_a_command_ignoring_ctrl_c_is_killed(env: AsyncTerminalEnv) -> None:
    seen = await run(env, "bash -c \"trap '' INT; sleep 1000\"", timeout_s=0.3)
    assert seen.timed_out
    assert (await run(env, "echo alive")).stdout == "alive\n"


@module_loop
async def test_a_shell_that_cannot_be_interrupted_is_replaced(env: AsyncTerminalEnv) -> None:
    await run(env, "export LOST=1")
    seen = await run(env, "trap '' INT; while :; do :; done", timeout_s=0.3)
    assert seen.timed_out and seen.metadata == {"shell_restarted": True}
    assert "new shell" in seen.error
    after = await run(env, "echo ${LOST:-gone}; pwd")
    assert after.stdout == f"gone\n{(await env.state()).workspace}\n"


@module_loop
async def test_exit_replaces_the_shell(env: AsyncTerminalEnv) -> None:
    seen = await run(env, "exit 7")
    assert seen.exit_code == 7 and seen.metadata == {"shell_restarted": True}
    assert (await run(env, "echo again")).stdout == "again\n"


@module_loop
async def test_closing_stdout_or_changing_the_terminal_is_harmless(env: AsyncTerminalEnv) -> None:
    closed = await run(env, "exec >&- 2>&-; echo lost")
    assert closed.exit_code == 1
    assert (await run(env, "echo back")).stdout == "back\n"
    stty = await run(env, "stty raw -echo -F /dev/tty; stty -a -F /dev/tty | head -c 0")
    assert stty.exit_code == 0
    assert (await run(env, "echo still")).stdout == "still\n"
    tty = await run(env, "head -c 1000000 /dev/zero > /dev/tty; echo written", timeout_s=20)
    assert tty.stdout == "written\n" and not tty.timed_out  # nobody reads it, nothing blocks
    ctl = await run(env, "for fd in /proc/$$/fd/*; do exec {x}>&-; done 2>/dev/null; echo x")
    assert ctl.exit_code is not None
    assert (await run(env, "echo fine")).stdout == "fine\n"


@module_loop
async def test_cwd_and_env_apply_to_one_command(env: AsyncTerminalEnv) -> None:
    home = (await run(env, "cd ~ && pwd")).stdout.strip()
    seen = await run(env, "pwd; echo $ONLY", cwd="/usr", env={"ONLY": "once"})
    assert seen.stdout == "/usr\nonce\n"
    assert (await run(env, "pwd; echo ${ONLY:-unset}")).stdout == f"{home}\nunset\n"
    bad = await run(env, "true", env={"1bad": "x"})
    assert bad.exit_code == 1 and "not a variable name" in bad.error
    nul = await run(env, "echo a\0b")
    assert "NUL" in nul.error


@module_loop
async def test_files(env: AsyncTerminalEnv) -> None:
    blob = bytes(range(256)) * 3
    wrote = (await env.step(WriteFile("d/e/blob.bin", blob, mode=0o600))).observation
    assert wrote.exit_code == 0 and not wrote.error
    assert (await run(env, "stat -c %a d/e/blob.bin; wc -c < d/e/blob.bin")).stdout == "600\n768\n"
    read = (await env.step(ReadFile("d/e/blob.bin"))).observation
    assert read.data == blob and not read.truncated
    head = (await env.step(ReadFile("d/e/blob.bin", max_bytes=10))).observation
    assert head.data == blob[:10] and head.truncated
    await env.step(WriteFile("d/text.txt", "héllo\n"))  # str content is sent as UTF-8
    assert (await run(env, "cat d/text.txt")).stdout == "héllo\n"
    listing = (await env.step(ListDir("d"))).observation
    assert [(e.name, e.kind) for e in listing.entries] == [("e", "dir"), ("text.txt", "file")]
    await run(env, "cd d")  # relative paths follow the shell's directory
    assert (await env.step(ReadFile("text.txt"))).observation.data == "héllo\n".encode()
    missing = (await env.step(ReadFile("nope"))).observation
    assert missing.exit_code == 1 and missing.error.startswith("FileNotFoundError")
    fifo = await run(env, "mkfifo pipe && echo made")
    assert fifo.stdout == "made\n"
    assert (await env.step(ReadFile("pipe"))).observation.data == b""  # no hang


@module_loop
async def test_background_processes(env: AsyncTerminalEnv) -> None:
    await run(env, "export WHO=bg; cd /")
    started = await env.step(Start("echo $WHO in $PWD; read -t 0.2 x; echo late >&2; exit 5"))
    handle = started.observation.handle
    assert handle is not None and started.observation.running
    polled = (await env.step(Poll(handle, wait_s=10))).observation
    assert polled.stdout == "bg in /\n" and polled.stderr == "late\n"
    assert (polled.running, polled.exit_code) == (False, 5)
    again = (await env.step(Poll(handle))).observation
    assert again.error.startswith("ValueError: no background process")

    sleeper = (await env.step(Start("echo up; exec sleep 1000"))).observation.handle
    assert sleeper is not None
    first = (await env.step(Poll(sleeper, wait_s=0.5))).observation
    assert first.running and first.stdout == "up\n" and first.exit_code is None
    killed = (await env.step(Kill(sleeper))).observation
    assert not killed.running and killed.exit_code == 128 + signal.SIGKILL
    assert (await env.state()).handles == []


@module_loop
async def test_reset_kills_everything_and_cleans_the_workspace(env: AsyncTerminalEnv) -> None:
    old = (await env.state()).workspace
    await env.step(WriteFile("left.txt", b"x"))
    job = (await env.step(Start("sleep 1000"))).observation.handle
    assert job is not None
    pids = (await run(env, "sleep 1000 & echo $!; setsid sleep 1000 & echo $!")).stdout.split()
    (await env.step(Poll(job)))
    await env.reset()
    for pid in map(int, pids):
        assert gone(pid), f"pid {pid} outlived reset"
    state = await env.state()
    assert not Path(old).exists() and state.workspace != old
    assert (await env.step(ListDir("."))).observation.entries == []
    assert state.handles == []


@module_loop
async def test_bad_input_gets_precise_errors(endpoint: object) -> None:
    async with AsyncTerminalEnv(endpoint) as client:  # type: ignore[arg-type]
        with pytest.raises(EnvError, match="unknown reset options"):
            await client.reset(colour="red")
        with pytest.raises(EnvError, match="no task 'nope'"):
            await client.reset(task="nope")
        await client.reset()
        seen = (await client.step(Evaluate())).observation
        assert "no task to evaluate" in seen.error and not seen.done
        seen = (await client.step(Exec("true", timeout_s=-1))).observation
        assert "timeout_s" in seen.error
        with pytest.raises(TypeError, match="takes an operation"):
            client.step("ls")  # type: ignore[arg-type]


@module_loop
async def test_fork_is_not_supported(env: AsyncTerminalEnv) -> None:
    with pytest.raises(NotSupportedError):
        await env.fork()
    assert (await run(env, "echo ok")).stdout == "ok\n"


@module_loop
async def test_sessions_are_apart(endpoint: object) -> None:
    async with (
        AsyncTerminalEnv(endpoint) as one,  # type: ignore[arg-type]
        AsyncTerminalEnv(endpoint) as two,  # type: ignore[arg-type]
    ):
        await asyncio.gather(one.reset(), two.reset())
        await one.step(Exec("export MINE=one; cd /"))
        slow, fast = await asyncio.gather(
            one.step(Exec("sleep 0.3; echo $MINE")), two.step(Exec("echo ${MINE:-none}; pwd"))
        )
        assert slow.observation.stdout == "one\n"
        assert fast.observation.stdout == f"none\n{(await two.state()).workspace}\n"


def test_sync_client_and_closing_kill_everything() -> None:
    with TerminalEnv.from_process() as env:
        env.reset()
        pid = int(env.step(Exec("sleep 1000 & echo $!")).observation.stdout)
        assert env.step(TerminalAction(op=Exec("echo wrapped"))).observation.stdout == "wrapped\n"
        server_pid = int(env.step(Exec("echo $PPID")).observation.stdout)
    assert gone(pid) and gone(server_pid)


@module_loop
async def test_env_pool_drives_it() -> None:
    provider = LocalProcessProvider("envs.terminal_env")
    async with EnvPool(AsyncTerminalEnv, provider, 2, show_progress=False) as pool:
        await pool.reset()
        results = await pool.step([Exec("echo $((6 * 7))"), Exec("echo two")])
        assert [r.observation.stdout for r in results] == ["42\n", "two\n"]


def test_gymnasium_adapter_drives_it() -> None:
    from openenv.gym import make_env

    gym_env = make_env("terminal")
    try:
        gym_env.reset()
        # Gymnasium has no space for a tagged union: the operation travels as JSON text.
        operation = json.dumps({"op": "exec", "command": "echo gym"})
        _, _, terminated, _, info = gym_env.step({"op": operation})
        assert info["observation"].stdout == "gym\n" and not terminated
        _, _, _, _, info = gym_env.step(TerminalAction(op=Exec("echo typed")))
        assert info["observation"].stdout == "typed\n"
    finally:
        gym_env.close()


@module_loop
async def test_exec_read_file_and_write_file_are_tools(env: AsyncTerminalEnv) -> None:
    names = {tool.name for tool in await env.list_tools()}
    assert {"exec", "read_file", "write_file"} <= names
    await env.call_tool("exec", command="mkdir -p t && cd t && export VIA=tool")
    wrote = await env.call_tool("write_file", path="run.sh", content="echo $VIA\n", mode=0o755)
    assert wrote.observation.result == "wrote 10 bytes to run.sh"
    ran = (await env.call_tool("exec", command="./run.sh; pwd")).observation
    assert ran.result["stdout"] == f"tool\n{(await env.state()).workspace}/t\n"
    assert ran.result["exit_code"] == 0 and ran.reward == 0.0
    assert (await env.call_tool("read_file", path="run.sh")).observation.result == "echo $VIA\n"
    missing = (await env.call_tool("read_file", path="nope")).observation
    assert missing.error is not None and "FileNotFoundError" in missing.error.message
    assert (await env.state()).step_count >= 5  # tool calls are steps


def test_shells_die_with_a_killed_server(tmp_path: Path) -> None:
    # A root of its own: the killed server cannot remove its session's directory.
    env = TerminalEnv.from_process(env={"OPENENV_TERMINAL_ROOT": str(tmp_path)})
    try:
        env.reset()
        shell = int(env.step(Exec("echo $$")).observation.stdout)
        server = int(env.step(Exec("echo $PPID")).observation.stdout)
        os.kill(server, signal.SIGKILL)
        # The pty's hang-up (and its parent-death signal) ends it: wait, bounded, for that.
        for _ in range(500):
            if gone(shell):
                break
            time.sleep(0.01)
        assert gone(shell)
    finally:
        with contextlib.suppress(Exception):
            env.close()


@module_loop
async def test_large_commands_and_many_background_processes(env: AsyncTerminalEnv) -> None:
    text = "x" * 300_000  # several pipe buffers of command line
    seen = await run(env, f"echo {text} | wc -c")
    assert seen.stdout == f"{len(text) + 1}\n"
    for _ in range(64):
        assert (await env.step(Start("exit 0"))).observation.handle is not None
    refused = (await env.step(Start("true"))).observation
    assert "64 background processes" in refused.error
    for handle in (await env.state()).handles:
        assert not (await env.step(Poll(handle, wait_s=10))).observation.running
    assert (await env.step(Start("true"))).observation.handle is not None


@module_loop
async def test_a_shell_killed_between_steps_is_replaced_and_said_so(
    env: AsyncTerminalEnv,
) -> None:
    await run(env, "export GONE=1")
    shell = int((await run(env, "echo $$")).stdout)
    await env.step(Start("kill -9 $$"))  # $$: the shell itself, from its background job
    for _ in range(500):  # bounded wait for the kill to land
        if gone(shell):
            break
        await asyncio.sleep(0.01)
    noticed = await run(env, "echo ${GONE:-unset}")
    # The server notices the death before this step (a new shell runs it) or during it (the
    # command is lost with the shell): either way the observation says so.
    assert noticed.metadata == {"shell_restarted": True}
    assert "the shell" in noticed.error and "exited" in noticed.error
    assert noticed.stdout in ("unset\n", "")
    assert (await run(env, "echo ${GONE:-unset}")).stdout == "unset\n"
