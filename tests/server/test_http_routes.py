"""Upstream-shaped plain HTTP routes: stateless reset/step/state, schema, metadata, health."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import ServerConfig, create_app
from tests.server.test_app import FlakyEchoEnvironment
from tests.server.test_upstream_dialect import NeedsResetEnvironment


class ClosingEnvironment(EchoEnvironment):
    closed = 0

    def close(self) -> None:
        type(self).closed += 1


def client_for(env: Any = EchoEnvironment, **config: Any) -> TestClient:
    return TestClient(create_app(env, config=ServerConfig(**config)))


def test_reset_step_state_in_upstreams_shapes() -> None:
    with client_for() as client:
        reset = client.post("/reset", json={"seed": 3, "episode_id": "e1"})
        assert reset.status_code == 200
        assert reset.json() == {  # upstream 0.10's shape: metadata also at the top, always
            "observation": {
                "echoed_message": "Echo environment ready!",
                "message_length": 0,
                "metadata": {},
            },
            "reward": 0.0,
            "done": False,
            "metadata": None,
        }
        assert client.post("/reset").status_code == 200  # no body: every field defaults
        step = client.post("/step", json={"action": {"message": "hi"}, "request_id": "r1"})
        assert step.json() == {
            "observation": {"echoed_message": "hi", "message_length": 2, "metadata": {}},
            "reward": 0.2,
            "done": False,
            "metadata": None,
        }
        assert client.get("/state").json() == {"episode_id": None, "step_count": 0}


def test_every_request_gets_a_fresh_env_closed_afterwards() -> None:
    ClosingEnvironment.closed = 0
    with client_for(ClosingEnvironment) as client:
        client.post("/reset", json={})
        client.post("/step", json={"action": {"message": "a"}})
        client.post("/step", json={"action": {"message": "b"}})
        assert client.get("/state").json()["step_count"] == 0  # nothing carried over
    assert ClosingEnvironment.closed == 4


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/step", {}, ["body", "action"]),
        ("/step", {"action": {}}, ["body", "action", "message"]),
        ("/step", {"action": {"message": 1}}, ["body", "action", "message"]),
        ("/step", {"action": {"message": "x"}, "timeout_s": 0}, ["body", "timeout_s"]),
        ("/step", [], ["body"]),
        ("/reset", {"seed": -1}, ["body", "seed"]),
        ("/reset", {"seed": "1"}, ["body", "seed"]),
        ("/reset", {"episode_id": 7}, ["body", "episode_id"]),
        ("/reset", [1], ["body"]),
    ],
)
def test_bad_input_is_422_naming_the_field(path: str, body: Any, loc: list[str]) -> None:
    with client_for() as client:
        response = client.post(path, json=body)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail[0]["loc"] == loc
        assert detail[0]["msg"]


def test_invalid_json_is_422() -> None:
    with client_for() as client:
        response = client.post(
            "/step", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body"]


def test_an_env_that_raises_is_500_with_the_error() -> None:
    with client_for(FlakyEchoEnvironment) as client:
        response = client.post("/step", json={"action": {"message": "boom"}})
        assert response.status_code == 500
        assert "the env blew up" in response.json()["detail"]
    with client_for(NeedsResetEnvironment) as client:
        response = client.post("/step", json={"action": {"message": "x"}})  # stateless: no reset
        assert response.status_code == 500


def test_schema_metadata_and_health() -> None:
    with client_for() as client:
        schema = client.get("/schema").json()
        assert set(schema) == {"action", "observation", "state"}
        assert schema["action"]["properties"]["message"] == {"type": "string"}
        assert schema["action"]["required"] == ["message"]
        assert "echoed_message" in schema["observation"]["properties"]
        metadata = client.get("/metadata").json()
        assert metadata["name"] == "echo_env"
        assert metadata["description"].startswith("Echoes every message")
        assert client.get("/health").json() == {"status": "healthy", "active_sessions": 0}


def test_with_a_token_every_route_but_health_wants_it() -> None:
    with client_for(token="s3cret") as client:
        for method, path in [
            ("POST", "/reset"),
            ("POST", "/step"),
            ("GET", "/state"),
            ("GET", "/schema"),
            ("GET", "/metadata"),
        ]:
            response = client.request(method, path, json={"action": {"message": "x"}})
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/reset", headers=good).status_code == 200
        assert client.get("/health").status_code == 200


def test_openapi_lists_the_routes_and_mcp_answers_in_json_rpc() -> None:
    with client_for() as client:
        document = client.get("/openapi.json").json()
        assert document["info"]["version"] == "1.0.0"
        assert {"/reset", "/step", "/state", "/schema", "/metadata", "/health", "/mcp"} <= set(
            document["paths"]
        )
        step = document["paths"]["/step"]["post"]["requestBody"]["content"]["application/json"]
        assert "message" in step["schema"]["properties"]["action"]["properties"]
        answer = client.post("/mcp", json={"jsonrpc": "2.0", "id": 7, "method": "tools/nope"})
        assert answer.status_code == 200
        assert answer.json()["id"] == 7 and answer.json()["error"]["code"] == -32601
        assert client.post("/mcp", json={}).json()["error"]["code"] == -32600
        assert client.post("/mcp", content=b"{").json()["error"]["code"] == -32700


def test_an_empty_token_means_none_even_once_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    from openenv.server import config

    monkeypatch.setenv("OPENENV_TOKEN", "")
    monkeypatch.setattr(config, "_hidden", {})
    config.hide_token()  # as openenv serve does before importing the env
    assert config.ServerConfig.from_env().token is None
