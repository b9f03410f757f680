"""Fixtures for interoperability with upstream OpenEnv (openenv-core 0.3.0), run for real.

Upstream's package is also called ``openenv``, so it lives in its own venv: ``make
upstream-venv`` makes ``.venv-upstream/`` (cached; ``OPENENV_UPSTREAM_PYTHON`` names another
interpreter). Without it these tests skip loudly, or fail when ``OPENENV_REQUIRE_UPSTREAM=1``
(CI) says they must run. Importing openenv-core takes seconds (it pulls in gradio), so each
upstream process is started once per test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_SERVER = ROOT / "benchmarks" / "upstream" / "upstream_server.py"
DRIVER = Path(__file__).with_name("upstream_driver.py")
STARTUP_TIMEOUT = 180.0  # a cold openenv-core import on a loaded 2-core box


def upstream_python() -> str:
    """The upstream venv's interpreter; skips (or fails in CI) when it is not there."""
    python = os.environ.get("OPENENV_UPSTREAM_PYTHON") or str(ROOT / ".venv-upstream/bin/python")
    problem = None
    if not Path(python).exists():
        problem = f"no upstream interpreter at {python} (make upstream-venv)"
    else:
        done = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('openenv-core'))"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",  # not the repo root: our own openenv/ would shadow upstream's
        )
        if done.returncode != 0 or done.stdout.strip() != "0.3.0":
            problem = (
                f"{python} has no openenv-core 0.3.0 ({done.stdout.strip() or done.stderr[-200:]})"
            )
    if problem is None:
        return python
    if os.environ.get("OPENENV_REQUIRE_UPSTREAM") == "1":
        pytest.fail(f"OPENENV_REQUIRE_UPSTREAM=1 but {problem}")
    pytest.skip(f"UPSTREAM INTEROP TESTS SKIPPED: {problem}")


def upstream_env() -> dict[str, str]:
    """The environment of an upstream subprocess: nothing that would put our package first."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


class UpstreamServer:
    """An env server made by openenv-core's own ``create_app``, in a subprocess on 127.0.0.1."""

    def __init__(self, python: str, env: str, max_sessions: int) -> None:
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
def upstream_echo_server() -> Iterator[UpstreamServer]:
    """openenv-core's create_app serving an upstream echo env (max 8 sessions)."""
    server = UpstreamServer(upstream_python(), "echo", max_sessions=8)
    try:
        yield server
    finally:
        server.stop()


def run_driver(modes: str, base_url: str) -> dict[str, Any]:
    """Run openenv-core's own clients (tests/interop/upstream_driver.py) against ``base_url``."""
    done = subprocess.run(
        [upstream_python(), str(DRIVER), modes, base_url],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        cwd="/",
        env=upstream_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
