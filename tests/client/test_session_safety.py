"""A client connected to the wrong env, or given the wrong action, fails at once and says why."""

from __future__ import annotations

import pytest

from envs.coding_env import AsyncCodingEnv, CodeAction, CodingEnv
from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv
from openenv import (
    ActionTypeError,
    AddressError,
    AsyncEnvClient,
    ConnectError,
    EnvMismatchError,
    OpenEnvError,
)


async def test_a_client_of_another_env_fails_at_connect_naming_both(echo_server: str) -> None:
    client = AsyncCodingEnv(echo_server)
    with pytest.raises(EnvMismatchError) as caught:
        await client.connect()
    await client.close()
    error = caught.value
    assert isinstance(error, ConnectError)
    assert (error.expected, error.actual, error.server_env) == (
        "CodeAction",
        "EchoAction",
        "echo_env",
    )
    assert "AsyncCodingEnv expects an env whose action is CodeAction" in str(error)
    assert "serves echo_env (action EchoAction)" in str(error)


async def test_the_first_call_checks_too(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server) as echo:  # the right client connects
        assert (await echo.reset()).observation.echoed_message
    client = AsyncCodingEnv(echo_server)
    with pytest.raises(EnvMismatchError):
        await client.reset()
    await client.close()


async def test_a_generic_client_talks_to_any_env(echo_server: str) -> None:
    async with AsyncEnvClient(echo_server) as client:
        result = await client.reset()
        assert result.observation.metadata == {} and result.reward is not None


async def test_a_wrong_action_type_is_refused_before_sending(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server) as env:
        await env.reset()
        expected = r"^step\(\) expected EchoAction, got CodeAction$"
        with pytest.raises(ActionTypeError, match=expected):
            await env.step(CodeAction(code="x"))  # type: ignore[arg-type]
        # The session is untouched: the next step works.
        assert (await env.step(EchoAction(message="hi"))).observation.echoed_message == "hi"


def test_an_address_without_a_scheme_is_an_openenv_error() -> None:
    with pytest.raises(AddressError) as caught:
        EchoEnv("127.0.0.1:8799")
    assert isinstance(caught.value, OpenEnvError) and isinstance(caught.value, ValueError)
    assert "did you mean 'ws://127.0.0.1:8799'?" in str(caught.value)
    assert "want ws://host:port" in str(caught.value)


async def test_a_generic_client_checks_no_action_type(echo_server: str) -> None:
    async with AsyncEnvClient(echo_server) as client:
        await client.reset()
        result = await client.step({"message": "as a dict"})  # type: ignore[arg-type]
        assert result.observation.metadata == {}


def test_a_sync_client_of_another_env_names_itself() -> None:
    with EchoEnv.from_process(auth=False) as echo:
        client = CodingEnv(echo.endpoint)
        with pytest.raises(EnvMismatchError, match=r"^CodingEnv expects an env whose action is"):
            client.connect()
        client.close()
