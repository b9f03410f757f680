"""Upstream OpenEnv's own clients (0.3.0 and 0.10) against ``openenv serve envs.echo_env``, over
WebSocket, HTTP and (0.10) MCP.

The same driver also runs against an env server built with upstream's own ``create_app`` of the
same release; where upstream's answers are the reference (shapes, codes, close), ours must match
them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from tests.interop.conftest import ROOT, Upstream, UpstreamServer, run_driver

pytestmark = pytest.mark.timeout(600)  # two cold openenv-core imports on a loaded box

MODES = "generic,typed,http,errors,validate"


@contextmanager
def serving(target: str) -> Iterator[str]:
    """``openenv serve TARGET`` in a subprocess on 127.0.0.1, port 0, no token (upstream's
    clients send none by default); yields its http:// base URL."""
    env = {**os.environ, "OPENENV_TOKEN": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "openenv", "serve", target, "--port", "0", "--watch-parent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"ws://(127\.0\.0\.1:\d+)/ws", line)
        assert match, f"openenv serve did not start: {line}"
        yield f"http://{match[1]}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def our_echo_server() -> Iterator[str]:
    """``openenv serve envs.echo_env``: its typed action and its tool ``echo_message``."""
    with serving("envs.echo_env") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def driven(
    our_echo_server: str, upstream_echo_server: UpstreamServer, upstream: Upstream
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What upstream's clients got from our server and from upstream's own, run concurrently."""
    modes = MODES + (",autoenv" if upstream.modern else "")
    with ThreadPoolExecutor(2) as pool:
        ours = pool.submit(run_driver, modes, our_echo_server, upstream)
        theirs = pool.submit(run_driver, modes, upstream_echo_server.base_url, upstream)
        return ours.result(), theirs.result()


def without_metadata(value: Any) -> Any:
    """``value`` with the observations' ``metadata`` left out: 0.3.0's server drops it, ours
    (as 0.10's) keeps it."""
    if isinstance(value, dict):
        return {k: without_metadata(v) for k, v in value.items() if k != "metadata"}
    if isinstance(value, list):
        return [without_metadata(v) for v in value]
    return value


def test_generic_env_client_over_websocket(
    driven: tuple[dict[str, Any], dict[str, Any]], upstream: Upstream
) -> None:
    ours, theirs = driven
    generic = ours["generic"]
    assert generic["reset"] == [
        {"echoed_message": "Echo environment ready!", "message_length": 0, "metadata": {}},
        0.0,
        False,
    ]
    assert generic["step"] == [
        {"echoed_message": "Hello, World!", "message_length": 13, "metadata": {}},
        1.3,
        False,
    ]
    assert generic["step_count"] == 1
    assert "VALIDATION_ERROR" in generic["bad_action"]
    assert generic["after"] == {
        "echoed_message": "still here",
        "message_length": 10,
        "metadata": {},
    }
    ours_ = {k: v for k, v in generic.items() if k != "bad_action"}
    theirs_ = {k: v for k, v in theirs["generic"].items() if k != "bad_action"}
    if upstream.modern:
        assert ours_ == theirs_
    else:
        assert without_metadata(ours_) == theirs_


def test_typed_upstream_client_over_websocket(
    driven: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ours, theirs = driven
    assert ours["typed"] == {
        "reset": "Echo environment ready!",
        "step": ["abc", 3, 0.3],
        "state": [1, True],
    }
    assert ours["typed"] == theirs["typed"]


def test_websocket_errors_and_close_match_upstream(
    driven: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ours, theirs = driven
    assert ours["errors"] == {
        "not_json": ["error", "INVALID_JSON"],
        "unknown_type": ["error", "UNKNOWN_TYPE"],
        "extra_field": ["error", "VALIDATION_ERROR"],
        "bad_action": ["error", "VALIDATION_ERROR"],
        "reset": ["observation", None],
        "after_close": "ConnectionClosedOK",
        "close_code": 1000,
    }
    assert ours["errors"] == theirs["errors"]


def test_http_routes_match_upstream(
    driven: tuple[dict[str, Any], dict[str, Any]], upstream: Upstream
) -> None:
    ours, theirs = driven
    http, reference = ours["http"], theirs["http"]
    assert {k: v[0] for k, v in http.items()} == {k: v[0] for k, v in reference.items()}
    for name in ("reset", "reset_seeded", "step"):
        if upstream.modern:
            assert http[name] == reference[name], name
        else:
            assert without_metadata(http[name]) == reference[name], name
    assert http["health"][1]["status"] == reference["health"][1]["status"] == "healthy"
    assert http["step_missing_field"][1]["detail"][0]["loc"] == ["body", "action", "message"]
    assert http["step_no_action"][1]["detail"][0]["loc"] == ["body", "action"]
    assert http["state"][1] == {"episode_id": None, "step_count": 0}  # a fresh env per request
    assert set(http["schema"][1]) == {"action", "observation", "state"}
    assert "message" in http["schema"][1]["action"]["properties"]
    assert set(http["metadata"][1]) == set(reference["metadata"][1])
    assert http["metadata"][1]["name"] == "echo_env"


def test_upstreams_own_validator_passes(driven: tuple[dict[str, Any], dict[str, Any]]) -> None:
    ours, theirs = driven
    assert theirs["validate"]["passed"], theirs["validate"]["failed"]
    assert ours["validate"] == {"passed": True, "mode": "simulation", "failed": []}


def test_autoenv_with_a_base_url(
    driven: tuple[dict[str, Any], dict[str, Any]], upstream: Upstream
) -> None:
    if not upstream.modern:
        pytest.skip("AutoEnv's base_url is 0.10's")
    ours, theirs = driven
    assert ours["autoenv"]["step"] == 0.4
    assert ours["autoenv"] == theirs["autoenv"]


@pytest.fixture(scope="module")
def our_marker_server() -> Iterator[str]:
    """An echo server whose observations carry metadata (``{"pid": ...}``)."""
    with serving("tests.marker_env:app") as base_url:
        yield base_url


def test_observation_metadata_reaches_upstreams_clients(
    our_marker_server: str, upstream: Upstream
) -> None:
    seen = run_driver("metadata", our_marker_server, upstream)["metadata"]
    metadata = seen["observation"]["metadata"]
    assert set(metadata) == {"pid"}
    # 0.10's client also reads it beside the observation; 0.3.0's has no such field.
    assert seen["metadata"] == (metadata if upstream.modern else None)


@pytest.fixture(scope="module")
def mcp_driven(
    our_echo_server: str, upstream_mcp_echo_server: UpstreamServer, modern_upstream: Upstream
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Upstream 0.10's MCPToolClient (and a raw {"type": "mcp"} tools/list, and a call_tool
    step) on our echo server and on upstream's own MCP echo env."""
    with ThreadPoolExecutor(2) as pool:
        ours = pool.submit(run_driver, "mcp", our_echo_server, modern_upstream)
        theirs = pool.submit(run_driver, "mcp", upstream_mcp_echo_server.base_url, modern_upstream)
        return ours.result()["mcp"], theirs.result()["mcp"]


def test_upstreams_mcp_tool_client_lists_and_calls_our_tools(
    mcp_driven: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ours, theirs = mcp_driven
    assert ours["tools"] == [["echo_message", ["message"]]]
    assert ours["echoed"] == "Hello from MCP"
    assert "no_such_tool" in ours["missing"]
    assert ours["ws_tools"] == [["echo_message", ["message"]]]  # verifiers' check: non-empty
    assert (ours["step_result"], ours["step_error"]) == ("s", None)
    assert {k: v for k, v in ours.items() if k != "missing"} == {
        k: v for k, v in theirs.items() if k != "missing"
    }


def test_upstreams_mcp_tool_client_lists_and_calls_the_terminal_envs_tools(
    modern_upstream: Upstream,
) -> None:
    with serving("envs.terminal_env") as base_url:  # a local process: no isolation, a test
        seen = run_driver("mcp_terminal", base_url, modern_upstream)["mcp_terminal"]
    assert {"exec", "read_file", "write_file"} <= set(seen["tools"])
    assert seen["written"] == "wrote 14 bytes to note.txt"
    assert seen["ran"]["exit_code"] == 0
    assert "from upstream" in str(seen["ran"]["stdout"])
