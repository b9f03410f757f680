"""ReadAheadWebSocketProtocol under real uvicorn: no pause per message, a pause for a flood."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv.protocol import Codec, Reset, Result, Step, reply_type, request_type
from openenv.server.read_ahead import MAX_UNREAD, ReadAheadWebSocketProtocol
from openenv.types import Observation, State
from tests.conftest import running_server


@pytest.fixture
def paused_after_each_message(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether reading was paused after each message the server queued for its app."""
    record: list[bool] = []
    queue_message = ReadAheadWebSocketProtocol.send_receive_event_to_app

    def recorded(self: ReadAheadWebSocketProtocol) -> None:
        queue_message(self)
        record.append(self.read_paused)

    monkeypatch.setattr(ReadAheadWebSocketProtocol, "send_receive_event_to_app", recorded)
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
    echo_app_factory: Any, paused_after_each_message: list[bool]
) -> None:
    requests: Codec[Any] = Codec(request_type(EchoAction))
    replies: Codec[Any] = Codec(reply_type(Observation, State))
    async with running_server(echo_app_factory()) as address:
        async with connect(address, compression=None, proxy=None) as ws:
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
