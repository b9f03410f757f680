"""Forked sessions against a real uvicorn server: divergence, limits, tickets, not_supported."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv
from envs.echo_env.models import EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.exceptions import AuthenticationError, CapacityError, NotResetError, NotSupportedError
from openenv.protocol import Codec, Fork, ForkTickets, reply_type, request_type
from openenv.server import Environment, ServerConfig, create_app
from openenv.types import State
from tests.conftest import running_server

TOKEN = "s3cret"


@asynccontextmanager
async def echo_server(
    env: type[Environment[Any, Any, Any]] = EchoEnvironment, **config: Any
) -> AsyncIterator[tuple[str, Any]]:
    """A real server (uvicorn, TCP port 0) and its app, for a look at its counters."""
    app = create_app(env, config=ServerConfig(token=TOKEN, **config))
    async with running_server(app) as address:
        yield address, app.state.openenv


async def wait_for(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for a server counter that changes when the server gets to it: a
    session's end or a ticket's expiry happen on the server's side of a socket."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - no event to await: a counter of the server
            await asyncio.sleep(0.01)


def say(message: str) -> EchoAction:
    return EchoAction(message=message)


async def test_a_fork_sees_the_prefix_and_then_both_diverge() -> None:
    async with echo_server() as (address, _), AsyncEchoEnv(address, token=TOKEN) as parent:
        await parent.reset(episode_id="ep-1")
        await parent.step(say("a"))
        await parent.step(say("b"))
        async with await parent.fork() as child:
            assert child.hello is not None and parent.hello is not None
            assert child.hello.forked_from == parent.hello.session_id
            assert child.hello.session_id != parent.hello.session_id
            # The child continues the parent's episode: no reset, same id, same step count.
            state = await child.state()
            assert (state.episode_id, state.step_count) == ("ep-1", 2)
            for _ in range(3):
                await child.step(say("child"))
            await parent.step(say("parent"))
            assert (await child.state()).step_count == 5
            assert (await parent.state()).step_count == 3
            # A new episode on one leaves the other's alone.
            await child.reset(episode_id="ep-2")
            assert (await parent.state()).episode_id == "ep-1"
        assert (await parent.step(say("still here"))).observation.echoed_message == "still here"


async def test_fork_many_gives_independent_copies_and_a_fork_can_fork() -> None:
    async with echo_server() as (address, server), AsyncEchoEnv(address, token=TOKEN) as parent:
        await parent.reset()
        await parent.step(say("x"))
        children = await parent.fork_many(3)
        try:
            assert server.active_sessions == 4
            for extra, child in enumerate(children):
                for _ in range(extra):
                    await child.step(say("y"))
            counts = [(await child.state()).step_count for child in children]
            assert counts == [1, 2, 3]
            async with await children[2].fork() as grandchild:
                assert (await grandchild.state()).step_count == 3
        finally:
            for child in children:
                await child.close()
        assert (await parent.state()).step_count == 1
        await wait_for(lambda: server.active_sessions == 1)


async def test_a_fork_before_reset_has_no_episode_either() -> None:
    async with echo_server() as (address, _), AsyncEchoEnv(address, token=TOKEN) as parent:
        async with await parent.fork() as child:
            with pytest.raises(NotResetError):
                await child.step(say("x"))
            await child.reset()
            await child.step(say("x"))


async def test_fork_on_a_full_server_is_a_capacity_error_and_the_session_goes_on() -> None:
    async with echo_server(max_sessions=2) as (address, server):
        async with AsyncEchoEnv(address, token=TOKEN) as parent:
            await parent.reset()
            with pytest.raises(CapacityError, match="fork"):
                await parent.fork_many(2)  # one slot free, two asked: none is made
            assert server.active_sessions == 1
            child = await parent.fork()  # the one free slot
            try:
                assert server.active_sessions == 2
                with pytest.raises(CapacityError):
                    await child.fork()
                with pytest.raises(CapacityError):
                    await AsyncEchoEnv(address, token=TOKEN).connect()
                await parent.step(say("fine"))
                await child.step(say("fine"))
            finally:
                await child.close()
            await wait_for(lambda: server.active_sessions == 1)
            async with await parent.fork():
                pass


class _Unforkable(EchoEnvironment):
    forkable = False


class _HoldsALock(EchoEnvironment):
    """Deep-copying a lock raises TypeError: the default fork cannot copy this env."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


@pytest.mark.parametrize(
    ("env", "why"), [(_Unforkable, "does not support fork"), (_HoldsALock, "cannot be copied")]
)
async def test_an_env_that_cannot_copy_itself_answers_not_supported(
    env: type[Environment[Any, Any, Any]], why: str
) -> None:
    async with echo_server(env) as (address, server), AsyncEchoEnv(address, token=TOKEN) as parent:
        await parent.reset()
        with pytest.raises(NotSupportedError, match=why) as caught:
            await parent.fork()
        assert caught.value.code == "not_supported"
        assert server.active_sessions == 1  # the reserved slot was given back
        await parent.step(say("still usable"))


class _BlockingEcho(EchoEnvironment):
    """Runs on a thread of its own per session; so does its fork."""

    blocking = True


async def test_a_blocking_env_forks_on_its_thread() -> None:
    async with echo_server(_BlockingEcho) as (address, server):
        async with AsyncEchoEnv(address, token=TOKEN) as parent:
            await parent.reset()
            await parent.step(say("a"))
            (ticket,) = await parent.fork_tickets()
            assert len(server.forks) == 1  # parked until redeemed
            async with AsyncEchoEnv(address, ticket=ticket) as child:
                assert len(server.forks) == 0
                await child.step(say("b"))
                assert (await child.state()).step_count == 2
            assert (await parent.state()).step_count == 1


class _ForkRaises(EchoEnvironment):
    def fork(self) -> EchoEnvironment:
        raise RuntimeError("copy went wrong")


async def test_an_env_whose_fork_raises_reports_env_error_and_goes_on() -> None:
    from openenv.exceptions import EnvError

    async with echo_server(_ForkRaises) as (address, server):
        async with AsyncEchoEnv(address, token=TOKEN) as parent:
            await parent.reset()
            with pytest.raises(EnvError, match="copy went wrong"):
                await parent.fork()
            assert server.active_sessions == 1
            await parent.step(say("ok"))


async def test_a_ticket_opens_one_session_only() -> None:
    async with echo_server() as (address, _), AsyncEchoEnv(address, token=TOKEN) as parent:
        await parent.reset()
        (ticket,) = await parent.fork_tickets()
        # No token needed: the ticket replaces it for this one session.
        async with AsyncEchoEnv(address, ticket=ticket) as child:
            await child.step(say("mine"))
            with pytest.raises(AuthenticationError, match="fork ticket"):
                await AsyncEchoEnv(address, ticket=ticket).connect()
            await child.step(say("still mine"))


async def test_a_ticket_is_refused_by_a_server_with_another_token() -> None:
    async with echo_server() as (address, _), AsyncEchoEnv(address, token=TOKEN) as parent:
        await parent.reset()
        (ticket,) = await parent.fork_tickets()
        other = create_app(EchoEnvironment, config=ServerConfig(token="another"))
        async with running_server(other) as other_address:
            with pytest.raises(AuthenticationError, match="fork ticket"):
                await AsyncEchoEnv(other_address, ticket=ticket).connect()
        # Presented to a server with another token, it was never redeemed: still good here.
        async with AsyncEchoEnv(address, ticket=ticket) as child:
            assert (await child.state()).step_count == 0


async def test_the_upstream_dialect_has_no_fork() -> None:
    async with echo_server() as (address, _):
        async with AsyncEchoEnv(address, token=TOKEN, protocol="upstream") as upstream:
            await upstream.reset()
            with pytest.raises(NotSupportedError, match="upstream"):
                await upstream.fork()
            await upstream.step(say("still usable"))
        async with AsyncEchoEnv(address, token=TOKEN) as parent:
            (ticket,) = await parent.fork_tickets()
            # A ticket opens only a session in our dialect; refused, it stays redeemable.
            with pytest.raises(AuthenticationError):
                await AsyncEchoEnv(address, ticket=ticket, protocol="upstream").connect()
            async with AsyncEchoEnv(address, ticket=ticket) as child:
                await child.reset()


async def test_forged_tickets_are_refused() -> None:
    async with echo_server() as (address, _), AsyncEchoEnv(address, token=TOKEN) as parent:
        (ticket,) = await parent.fork_tickets()
        nonce, _, mac = ticket.partition(".")
        for forged in (f"{nonce}.{'A' * len(mac)}", nonce, "", f"other.{mac}", TOKEN):
            with pytest.raises(AuthenticationError):
                await AsyncEchoEnv(address, ticket=forged).connect()


async def test_an_unused_ticket_expires_and_frees_its_slot() -> None:
    async with echo_server(fork_ticket_ttl=0.3) as (address, server):
        async with AsyncEchoEnv(address, token=TOKEN) as parent:
            await parent.reset()
            (ticket,) = await parent.fork_tickets()
            assert server.active_sessions == 2  # the parked copy holds a slot
            await wait_for(lambda: server.active_sessions == 1)
            with pytest.raises(AuthenticationError, match="fork ticket"):
                await AsyncEchoEnv(address, ticket=ticket).connect()


async def test_a_server_without_a_token_binds_tickets_to_a_secret_of_its_own() -> None:
    first = create_app(EchoEnvironment, config=ServerConfig())
    second = create_app(EchoEnvironment, config=ServerConfig())
    async with running_server(first) as one, running_server(second) as two:
        async with AsyncEchoEnv(one) as parent:
            (ticket,) = await parent.fork_tickets()
            with pytest.raises(AuthenticationError):
                await AsyncEchoEnv(two, ticket=ticket).connect()
            async with AsyncEchoEnv(one, ticket=ticket) as child:
                await child.reset()


def test_the_sync_client_forks_too(echo_app_factory: Any) -> None:
    app = echo_app_factory(token=TOKEN)

    async def serve(started: threading.Event, stop: asyncio.Event, out: list[str]) -> None:
        async with running_server(app) as address:
            out.append(address)
            started.set()
            await stop.wait()

    # The server runs on a loop of its own thread; the sync client needs none.
    started, out = threading.Event(), []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(started, stop, out),))
    thread.start()
    try:
        assert started.wait(10)
        with EchoEnv(out[0], token=TOKEN) as parent:
            parent.reset()
            parent.step(say("a"))
            with parent.fork() as child:
                child.step(say("b"))
                assert child.state().step_count == 2
            assert parent.state().step_count == 1
            twins = parent.fork_many(2)
            assert [twin.state().step_count for twin in twins] == [1, 1]
            for twin in twins:
                twin.close()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_fork_messages_follow_the_schema_evolution_rule() -> None:
    # New fields have defaults: a minimal frame, and an older server's greeting, still decode.
    requests: Codec[Any] = Codec(request_type(EchoAction))
    assert requests.decode('{"type": "fork", "id": 3}') == Fork(id=3, count=1)
    replies: Codec[Any] = Codec(reply_type(EchoObservation, State))
    assert replies.decode('{"type": "fork_tickets", "id": 3}') == ForkTickets(id=3)
    old_hello = '{"type": "hello", "protocol": 1, "env": "echo_env", "session_id": "s"}'
    assert replies.decode(old_hello).forked_from is None
