"""The app under real uvicorn, over TCP port 0 and a unix socket, with the real async client."""

from __future__ import annotations

import asyncio
import threading

import pytest
from websockets.asyncio.client import connect

from envs.echo_env import AsyncEchoEnv, EchoAction
from envs.echo_env.models import EchoObservation
from openenv import CapacityError, ConnectionLostError
from openenv.protocol import CloseCode
from openenv.server import Environment, ServerConfig, create_app
from openenv.types import State
from tests.conftest import running_server


async def test_echo_over_tcp(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server) as env:
        assert (await env.reset()).observation.echoed_message == "Echo environment ready!"
        result = await env.step(EchoAction(message="Hello, World!"))
        assert (result.observation.echoed_message, result.reward) == ("Hello, World!", 1.3)


async def test_echo_over_unix_socket(tmp_uds: str, echo_app_factory: object) -> None:
    async with running_server(echo_app_factory(), uds=tmp_uds) as address:  # type: ignore[operator]
        assert address.startswith("unix://")
        async with AsyncEchoEnv(address) as env:
            await env.reset()
            assert (await env.step(EchoAction(message="abc"))).reward == pytest.approx(0.3)


async def test_oversized_frame_closes_1009_under_uvicorn(echo_app_factory: object) -> None:
    app = echo_app_factory(max_frame_bytes=4096)  # type: ignore[operator]
    async with running_server(app, ws_max_size=4096) as address:
        async with AsyncEchoEnv(address) as env:
            await env.reset()
            with pytest.raises(ConnectionLostError) as caught:
                await env.step(EchoAction(message="x" * 10_000))
            assert caught.value.code == CloseCode.TOO_BIG
        async with AsyncEchoEnv(address) as env:
            assert (await env.reset()).observation.echoed_message == "Echo environment ready!"


async def test_half_open_client_is_reaped_by_ping_timeout(echo_app_factory: object) -> None:
    app = echo_app_factory(max_sessions=1)  # type: ignore[operator]
    async with running_server(app, ws_ping_interval=0.5, ws_ping_timeout=1.0) as address:
        silent = await connect(address, ping_interval=None, compression=None, proxy=None)
        silent.transport.pause_reading()  # a peer that no longer answers pings
        with pytest.raises(CapacityError):
            await AsyncEchoEnv(address).connect()
        # The server frees the slot once the silent peer misses a pong (~1.5 s): wait for it.
        while True:
            env = AsyncEchoEnv(address)
            try:
                await env.connect()
                break
            except CapacityError:
                await env.close()
                await asyncio.sleep(0.05)
        async with env:
            await env.reset()
        silent.transport.abort()


class BlockingEnv(Environment[EchoAction, EchoObservation, State]):
    """A sync env doing blocking work, declared as such: a "block" step blocks its thread
    until the test releases it."""

    blocking = True
    threads: set[int] = set()
    entered = threading.Event()
    release = threading.Event()

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: object
    ) -> EchoObservation:
        return EchoObservation(echoed_message="ready")

    def step(self, action: EchoAction) -> EchoObservation:
        BlockingEnv.threads.add(threading.get_ident())
        if action.message == "block":
            BlockingEnv.entered.set()
            BlockingEnv.release.wait(30)
        return EchoObservation(echoed_message=action.message)

    @property
    def state(self) -> State:
        return State()


async def test_blocking_env_does_not_stall_other_sessions() -> None:
    async with running_server(create_app(BlockingEnv, config=ServerConfig())) as address:
        async with AsyncEchoEnv(address) as slow, AsyncEchoEnv(address) as fast:
            await slow.reset()
            await fast.reset()
            slow_step = asyncio.create_task(slow.step(EchoAction(message="block")))
            assert await asyncio.to_thread(BlockingEnv.entered.wait, 10)
            # The other session is served while the first one's step still blocks its thread
            # (which only this test releases: had it stalled the loop, nothing would answer).
            assert (await fast.step(EchoAction(message="0"))).observation.echoed_message == "0"
            assert not slow_step.done()
            BlockingEnv.release.set()
            assert (await slow_step).observation.echoed_message == "block"
    assert threading.get_ident() not in BlockingEnv.threads
