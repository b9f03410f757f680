"""Fixtures for interoperability with upstream OpenEnv, run for real against both releases users
still run: ``openenv-core`` 0.3.0 and ``openenv`` 0.10 (its newest, MCP tool envs the default).

Upstream's package is also called ``openenv``, so each release lives in a venv of its own:
``make upstream-venv`` makes ``.venv-upstream/`` (0.3.0) and ``.venv-upstream-0.10/`` (cached;
``OPENENV_UPSTREAM_PYTHON`` / ``OPENENV_UPSTREAM10_PYTHON`` name other interpreters). Every test
using the ``upstream`` fixture runs once per release. Without a venv those tests skip loudly,
or fail when ``OPENENV_REQUIRE_UPSTREAM=1`` (CI) says they must run. Importing upstream takes
seconds (it pulls in gradio), so each upstream process is started once per test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_SERVER = ROOT / "benchmarks" / "upstream" / "upstream_server.py"
DRIVER = Path(__file__).with_name("upstream_driver.py")
STARTUP_TIMEOUT = 180.0  # a cold upstream import on a loaded 2-core box


@dataclass(frozen=True)
class Upstream:
    """One upstream release, and the interpreter of the venv holding it."""

    version: str  # "0.3.0" or "0.10.0"
    distribution: str
    venv: str
    variable: str  # names another interpreter

    @property
    def modern(self) -> bool:
        """0.10 and later: MCP tool envs, metadata in observations, AutoEnv."""
        return not self.version.startswith("0.3.")

    @property
    def python(self) -> str:
        return os.environ.get(self.variable) or str(ROOT / self.venv / "bin" / "python")


UPSTREAMS = (
    Upstream("0.3.0", "openenv-core", ".venv-upstream", "OPENENV_UPSTREAM_PYTHON"),
    Upstream("0.10.0", "openenv", ".venv-upstream-0.10", "OPENENV_UPSTREAM10_PYTHON"),
)


def upstream_python(upstream: Upstream = UPSTREAMS[0]) -> str:
    """The interpreter of ``upstream``'s venv; skips (or fails in CI) when it is not there."""
    python = upstream.python
    problem = None
    if not Path(python).exists():
        problem = f"no upstream interpreter at {python} (make upstream-venv)"
    else:
        done = subprocess.run(
            [
                python,
                "-c",
                f"import importlib.metadata as m; print(m.version({upstream.distribution!r}))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",  # not the repo root: our own openenv/ would shadow upstream's
        )
        if done.returncode != 0 or done.stdout.strip() != upstream.version:
            found = done.stdout.strip() or done.stderr[-200:]
            problem = f"{python} has no {upstream.distribution} {upstream.version} ({found})"
    if problem is None:
        return python
    if os.environ.get("OPENENV_REQUIRE_UPSTREAM") == "1":
        pytest.fail(f"OPENENV_REQUIRE_UPSTREAM=1 but {problem}")
    pytest.skip(f"UPSTREAM INTEROP TESTS SKIPPED: {problem}")


@pytest.fixture(scope="session", params=UPSTREAMS, ids=lambda u: f"upstream-{u.version}")
def upstream(request: pytest.FixtureRequest) -> Upstream:
    """Each upstream release in turn (its venv checked)."""
    release: Upstream = request.param
    upstream_python(release)
    return release


@pytest.fixture(scope="session")
def modern_upstream() -> Upstream:
    """Upstream 0.10 only: what 0.3.0 does not have (MCP tool envs, AutoEnv)."""
    release = UPSTREAMS[1]
    upstream_python(release)
    return release


def upstream_env() -> dict[str, str]:
    """The environment of an upstream subprocess: nothing that would put our package first."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


class UpstreamServer:
    """An env server made by openenv-core's own ``create_app``, in a subprocess on 127.0.0.1."""

    def __init__(self, python: str, env: str, max_sessions: int) -> None:
        self.env = env
        self.process = subprocess.Popen(
            [
                python,
                str(UPSTREAM_SERVER),
                "--env",
                env,
                "--port",
                "0",
                "--max-sessions",
                str(max_sessions),
            ],
            stdin=subprocess.PIPE,  # the server exits when it closes
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
            env=upstream_env(),
        )
        self.port = self._read_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"

    def _read_port(self) -> int:
        lines: list[str] = []
        found = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                lines.append(line)
                if line.startswith("PORT "):
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(STARTUP_TIMEOUT) or not lines or not lines[-1].startswith("PORT "):
            self.stop()
            raise RuntimeError(f"upstream server did not start: {''.join(lines)[-2000:]}")
        return int(lines[-1].split()[1])

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="session")
def upstream_echo_server(upstream: Upstream) -> Iterator[UpstreamServer]:
    """Upstream's own create_app serving an upstream echo env (max 8 sessions), per release."""
    server = UpstreamServer(upstream.python, "echo", max_sessions=8)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def upstream_mcp_echo_server(modern_upstream: Upstream) -> Iterator[UpstreamServer]:
    """Upstream 0.10's create_app serving an MCP tool env with upstream's echo tool
    (``echo_message``), built on its own MCPEnvironment and FastMCP."""
    server = UpstreamServer(modern_upstream.python, "mcp_echo", max_sessions=8)
    try:
        yield server
    finally:
        server.stop()


def run_driver(modes: str, base_url: str, upstream: Upstream = UPSTREAMS[0]) -> dict[str, Any]:
    """Run upstream's own clients (tests/interop/upstream_driver.py) against ``base_url``."""
    done = subprocess.run(
        [upstream.python, str(DRIVER), modes, base_url],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        cwd="/",
        env=upstream_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
