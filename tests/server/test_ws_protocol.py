"""EnvWebSocketProtocol under real uvicorn: no pause per message but a pause for a flood, and
a protocol failure answered with its close code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect, unix_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv.protocol import SUBPROTOCOL, Codec, Reset, Result, Step, reply_type, request_type
from openenv.providers.process import LocalProcessProvider
from openenv.server import create_app
from openenv.server.ws_protocol import MAX_UNREAD, EnvWebSocketProtocol
from openenv.types import Observation, State
from tests.conftest import running_server
from tests.slow_echo import SlowEchoEnvironment

OURS = [Subprotocol(SUBPROTOCOL)]  # our dialect: the greeting, then msgpack


class _Record(list[bool]):
    """Whether reading was paused after each read; ``paused`` is set at the first pause."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = asyncio.Event()


@pytest.fixture
def paused_after_each_message(monkeypatch: pytest.MonkeyPatch) -> _Record:
    """Whether reading was paused after each read from a session's connection."""
    record = _Record()
    data_received = EnvWebSocketProtocol.data_received

    def recorded(self: EnvWebSocketProtocol, data: bytes) -> None:
        data_received(self, data)
        if self._answered:
            record.append(self._read_paused)
            if self._read_paused:
                record.paused.set()

    monkeypatch.setattr(EnvWebSocketProtocol, "data_received", recorded)
    return record


async def test_request_reply_never_pauses_reading(
    echo_app_factory: Any, paused_after_each_message: list[bool]
) -> None:
    async with running_server(echo_app_factory()) as address:
        async with AsyncEchoEnv(address) as env:
            await env.reset()
            for index in range(100):
                result = await env.step(EchoAction(message=str(index)))
                assert result.observation.echoed_message == str(index)
    assert len(paused_after_each_message) >= 101
    assert not any(paused_after_each_message)


async def test_a_flood_pauses_reading_and_every_reply_comes_back_in_order(
    paused_after_each_message: list[bool],
) -> None:
    # An async env: each reply waits for its step, so requests arriving meanwhile queue up.
    requests = Codec(request_type(EchoAction))
    replies = Codec(reply_type(Observation, State))
    async with running_server(create_app(SlowEchoEnvironment)) as address:
        async with connect(address, compression=None, proxy=None, subprotocols=OURS) as ws:
            await ws.recv()  # the greeting
            frames = [requests.encode(Reset(id=0))] + [
                requests.encode(Step(id=i, action=EchoAction(message="x" * 1000)))
                for i in range(1, 500)
            ]
            for frame in frames:  # all sent before any reply is read
                await ws.send(frame)
            ids = []
            for _ in frames:
                reply = replies.decode(await ws.recv())
                assert isinstance(reply, Result)
                ids.append(reply.id)
    assert ids == list(range(500))
    assert any(paused_after_each_message), f"never paused with {MAX_UNREAD} unread"


async def test_an_oversized_frame_is_answered_1009_not_reset() -> None:
    # The client is still writing the frame when the server fails the connection; closing
    # the socket then (as uvicorn does) resets it, and the client may never see the 1009. With
    # a server process on uvloop, as here, uvicorn's own protocol lost it in 1 to 17 of each
    # size's 40 tries.
    limits = {"OPENENV_MAX_FRAME_BYTES": str(64 * 1024)}
    async with LocalProcessProvider("envs.echo_env", env=limits) as provider:
        endpoint = (await provider.start()).endpoint
        assert endpoint.unix_socket is not None
        headers = {"Authorization": f"Bearer {endpoint.token}"}
        for size in [300_000, 1 << 20, 2 << 20] * 150:
            ws = await unix_connect(
                endpoint.unix_socket,
                endpoint.url,
                additional_headers=headers,
                compression=None,
                subprotocols=OURS,
            )
            await ws.recv()  # the greeting
            for _ in range(50):  # unread pongs pile up on the client's side
                await ws.ping()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.send(b"\x00" * size)
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None, "reset without a close frame"
            assert closed.value.rcvd.code == 1009


async def test_a_client_that_sends_without_reading_is_held_back(
    echo_app_factory: Any, paused_after_each_message: _Record
) -> None:
    # A sync env answers each request at once; while its replies pile up unread, the server
    # must stop taking requests (and reading), then serve them all, in order, once read.
    requests = Codec(request_type(EchoAction))
    replies = Codec(reply_type(Observation, State))
    frames = [requests.encode(Reset(id=0))] + [
        requests.encode(Step(id=i, action=EchoAction(message="x" * 65536))) for i in range(1, 300)
    ]
    async with running_server(echo_app_factory()) as address:
        connected = connect(address, compression=None, proxy=None, max_size=None, subprotocols=OURS)
        async with connected as ws:
            await ws.recv()  # the greeting

            async def flood() -> None:
                for frame in frames:
                    await ws.send(frame)

            sender = asyncio.create_task(flood())
            await asyncio.wait_for(paused_after_each_message.paused.wait(), 30)
            ids = []
            for _ in frames:
                reply = replies.decode(await ws.recv())
                assert isinstance(reply, Result)
                ids.append(reply.id)
            await sender
    assert ids == list(range(300))
