"""The local trust boundary: who may reach a server on this machine, and what the env's code
can reach of the server."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from envs.echo_env import AsyncEchoEnv
from tests.security.server import served

pytestmark = pytest.mark.timeout(180)

TOKEN = "trust-test-token"


@pytest.mark.parametrize(("option", "mode"), [([], 0o600), (["--uds-mode", "660"], 0o660)])
def test_a_unix_socket_is_created_private(tmp_path: Path, option: list[str], mode: int) -> None:
    path = tmp_path / "env.sock"
    with served("echo", tmp_path, args=["--uds", str(path), *option]):
        assert stat.S_IMODE(os.lstat(path).st_mode) == mode


def test_a_code_running_env_is_not_served_on_a_unix_socket_without_a_token(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "openenv", "serve", "envs.coding_env"]
    command += ["--uds", str(tmp_path / "env.sock")]
    environment = {k: v for k, v in os.environ.items() if k != "OPENENV_TOKEN"}
    try:
        done = subprocess.run(command, capture_output=True, env=environment, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the coding env was served on a unix socket without a token")
    assert done.returncode != 0
    assert b"runs code" in done.stderr and b"--insecure-no-token" in done.stderr, done.stderr


def test_with_insecure_no_token_it_is_served(tmp_path: Path) -> None:
    path = tmp_path / "env.sock"
    args = ["--uds", str(path), "--insecure-no-token"]
    with served("envs.coding_env", tmp_path, args=args):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600


async def test_the_env_code_cannot_read_the_token(tmp_path: Path) -> None:
    # Not in the environment the env's code (and all it starts) inherits, and the server is
    # non-dumpable: its /proc/<pid>/environ and memory are closed to other processes of its
    # user (an escaped interpreter runs as that user).
    with served("tests.security.big_env:app", tmp_path, env={"OPENENV_TOKEN": TOKEN}) as server:
        async with AsyncEchoEnv(server.url, token=TOKEN) as env:
            metadata = (await env.reset()).observation.metadata
    assert metadata == {"token_in_environ": False, "dumpable": 0}


def test_the_envs_that_run_code_say_so() -> None:
    from envs.coding_env.server.coding_environment import CodingEnvironment
    from envs.echo_env.server.echo_environment import EchoEnvironment
    from envs.terminal_env.server.terminal_environment import TerminalEnvironment

    assert CodingEnvironment.runs_code and TerminalEnvironment.runs_code
    assert not EchoEnvironment.runs_code
