"""openenv-core's own clients against ``openenv serve envs.echo_env``, over WebSocket and HTTP.

The same driver also runs against an env server built with openenv-core's own ``create_app``;
where upstream's answers are the reference (shapes, codes, close), ours must match them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.interop.conftest import ROOT, UpstreamServer, run_driver

pytestmark = pytest.mark.timeout(600)  # two cold openenv-core imports on a loaded box

MODES = "generic,typed,http,errors,validate"


@pytest.fixture(scope="module")
def our_echo_server() -> Iterator[str]:
    """``openenv serve envs.echo_env`` in a subprocess on 127.0.0.1, port 0, no token (upstream's
    clients cannot send one); yields its http:// base URL."""
    env = {**os.environ, "OPENENV_TOKEN": ""}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openenv",
            "serve",
            "envs.echo_env",
            "--port",
            "0",
            "--watch-parent",
        ],
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
def driven(
    our_echo_server: str, upstream_echo_server: UpstreamServer
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What upstream's clients got from our server and from upstream's own, run concurrently."""
    with ThreadPoolExecutor(2) as pool:
        ours = pool.submit(run_driver, MODES, our_echo_server)
        theirs = pool.submit(run_driver, MODES, upstream_echo_server.base_url)
        return ours.result(), theirs.result()


def test_generic_env_client_over_websocket(driven: tuple[dict[str, Any], dict[str, Any]]) -> None:
    ours, theirs = driven
    generic = ours["generic"]
    assert generic["reset"] == [
        {"echoed_message": "Echo environment ready!", "message_length": 0},
        0.0,
        False,
    ]
    assert generic["step"] == [
        {"echoed_message": "Hello, World!", "message_length": 13},
        1.3,
        False,
    ]
    assert generic["step_count"] == 1
    assert "VALIDATION_ERROR" in generic["bad_action"]
    assert generic["after"] == {"echoed_message": "still here", "message_length": 10}
    assert {k: v for k, v in generic.items() if k != "bad_action"} == {
        k: v for k, v in theirs["generic"].items() if k != "bad_action"
    }


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


def test_http_routes_match_upstream(driven: tuple[dict[str, Any], dict[str, Any]]) -> None:
    ours, theirs = driven
    http, reference = ours["http"], theirs["http"]
    assert {k: v[0] for k, v in http.items()} == {k: v[0] for k, v in reference.items()}
    for name in ("reset", "reset_seeded", "step"):
        assert http[name] == reference[name], name
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
