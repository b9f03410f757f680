"""EnvClient: the sync twin, over real servers started as local processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv
from openenv import ConnectionLostError, EnvTimeoutError, NotResetError
from openenv.client.portal import run_sync


def test_sync_client_mirrors_every_public_name_of_the_async_one() -> None:
    type_attributes = {"action_type", "observation_type", "state_type", "server_app"}
    async_names = {n for n in dir(AsyncEchoEnv) if not n.startswith("_")} - type_attributes
    assert async_names <= set(dir(EchoEnv))
    assert "endpoint" in vars(EchoEnv("ws://127.0.0.1:9"))  # (connects on first use only)


def test_errors_come_through_unchanged() -> None:
    with EchoEnv.from_process() as env, pytest.raises(NotResetError):
        env.step(EchoAction(message="x"))


def test_idle_sync_client_still_answers_pings() -> None:
    # The server reaps peers that miss a pong within 1 s of a ping sent every 0.25 s; the
    # client idles through several of them, so only a loop driven in the background keeps
    # the session alive. (The margins hold on a machine ten times slower than a quiet one.)
    options = {"OPENENV_PING_INTERVAL": "0.25", "OPENENV_PING_TIMEOUT": "1.0"}
    with EchoEnv.from_process(env=options) as env:
        env.reset()
        time.sleep(3.0)
        assert env.step(EchoAction(message="still here")).observation.echoed_message == "still here"


def test_many_threads_each_with_a_client_run_concurrently() -> None:
    with EchoEnv.from_process(env={"OPENENV_MAX_SESSIONS": "9"}) as first:
        endpoint = first.endpoint

        def episode(index: int) -> list[str]:
            with EchoEnv(endpoint) as env:
                env.reset()
                return [
                    env.step(EchoAction(message=f"{index}-{i}")).observation.echoed_message
                    for i in range(50)
                ]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(episode, range(8)))
        assert results == [[f"{t}-{i}" for i in range(50)] for t in range(8)]


def test_run_sync_from_the_client_loops_own_thread_is_refused() -> None:
    async def nothing() -> None:
        pass

    async def inside() -> None:
        run_sync(nothing())  # it would wait forever for the loop it blocks

    with pytest.raises(RuntimeError, match="loop's own thread"):
        run_sync(inside())


def test_sync_calls_from_a_thread_running_its_own_loop() -> None:
    import asyncio

    errors: list[BaseException] = []

    def jupyter_like() -> None:
        async def cell() -> None:
            with EchoEnv.from_process() as env:
                assert env.reset().observation.echoed_message == "Echo environment ready!"

        try:
            asyncio.run(cell())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=jupyter_like)
    thread.start()
    thread.join(30)
    assert not thread.is_alive() and errors == []


def test_a_call_interrupted_by_ctrl_c_is_abandoned_and_the_client_stays_usable() -> None:
    from openenv.providers.process import LocalProcessProvider

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    provider = LocalProcessProvider("tests.slow_echo:app")
    with EchoEnv.from_provider(provider) as env:
        env.reset()
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(KeyboardInterrupt):
                env.step(EchoAction(message="slow", metadata={"sleep": 1.0}))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        # The abandoned call's late reply is dropped, not taken for this call's.
        assert env.step(EchoAction(message="next")).observation.echoed_message == "next"
        assert env.state().step_count == 2


# A call blocks on the session's socket (sync_connection.py): no event loop is involved.


def _slow_env(**options: Any) -> EchoEnv:
    from openenv.providers.process import LocalProcessProvider

    return EchoEnv.from_provider(LocalProcessProvider("tests.slow_echo:app"), **options)


def test_sync_calls_need_no_event_loop() -> None:
    # The process's client loop (which started the server) is held up for the whole episode:
    # the session's calls do not notice.
    with EchoEnv.from_process() as env:
        release = threading.Event()

        async def hold_the_loop() -> None:
            release.wait(30)

        held = threading.Thread(target=run_sync, args=(hold_the_loop(),))
        held.start()
        try:
            env.reset()
            for i in range(20):
                assert env.step(EchoAction(message=f"m{i}")).observation.echoed_message == f"m{i}"
            assert env.state().step_count == 20
        finally:
            release.set()
            held.join(30)


@pytest.mark.parametrize("timeout", [0.02, 0.3])
def test_a_sync_step_past_the_timeout_raises_and_the_late_reply_is_dropped(
    timeout: float,
) -> None:
    with _slow_env(timeout=timeout) as env:
        env.reset()
        with pytest.raises(EnvTimeoutError) as caught:
            env.step(EchoAction(message="slow", metadata={"sleep": 1.5}))
        assert caught.value.timeout == timeout and caught.value.request == "step"
        env.timeout = 10.0
        assert env.step(EchoAction(message="next")).observation.echoed_message == "next"
        assert env.state().step_count == 2


def test_the_timeout_holds_while_the_loop_writes_a_large_request() -> None:
    # 4 MiB do not fit the socket's buffer: the write waits for room, under the same limit.
    with _slow_env(timeout=0.3) as env:
        env.reset()
        with pytest.raises(EnvTimeoutError):
            env.step(EchoAction(message="w" * (4 * 1024 * 1024), metadata={"sleep": 1.5}))
        env.timeout = 10.0
        assert env.step(EchoAction(message="next")).observation.echoed_message == "next"


def test_large_messages_both_ways_off_the_loop() -> None:
    # 4 MiB each way: the request outgrows the socket buffer and the reply takes many reads.
    message = "y" * (4 * 1024 * 1024)
    with EchoEnv.from_process() as env:
        env.reset()
        for _ in range(3):
            assert env.step(EchoAction(message=message)).observation.message_length == len(message)


def test_a_frame_over_the_servers_limit_loses_the_session_with_1009() -> None:
    # Small enough to go out in one write: the close frame arrives while the call waits.
    with EchoEnv.from_process(env={"OPENENV_MAX_FRAME_BYTES": "1024"}) as env:
        env.reset()
        with pytest.raises(ConnectionLostError) as caught:
            env.step(EchoAction(message="z" * 2000))
        assert caught.value.code == 1009
        assert not env.usable


def test_a_server_killed_mid_step_raises_connection_lost() -> None:
    from openenv.providers.process import LocalProcessProvider

    provider = LocalProcessProvider("tests.slow_echo:app")
    with EchoEnv.from_provider(provider) as env:
        env.reset()
        (server,) = provider.running()
        # Whenever the kill lands (before the request is written or while its reply is
        # awaited), the step sees its connection lost.
        killer = threading.Timer(0.3, os.kill, (int(server.id), signal.SIGKILL))
        killer.start()
        with pytest.raises(ConnectionLostError):
            env.step(EchoAction(message="slow", metadata={"sleep": 30}))
        killer.join(5)
        assert not env.usable


def test_a_long_sync_call_lets_the_other_sessions_on_the_loop_answer_pings() -> None:
    # While one session waits seconds for its reply, another one in the same thread idles
    # through pings it must answer within 1 s: the keepalive thread reads it meanwhile.
    from openenv.providers.process import LocalProcessProvider

    options = {"OPENENV_PING_INTERVAL": "0.25", "OPENENV_PING_TIMEOUT": "1.0"}
    provider = LocalProcessProvider("tests.slow_echo:app", env=options)
    with (
        EchoEnv.from_provider(provider) as slow,
        EchoEnv.from_process(env=options) as idle,
    ):
        slow.reset()
        idle.reset()
        slow.step(EchoAction(message="slow", metadata={"sleep": 3.0}))
        assert idle.step(EchoAction(message="alive")).observation.echoed_message == "alive"


# No session starves the others: servers drop a client that misses a pong within
# OPENENV_PING_TIMEOUT, and every session of the process keeps answering.
_SHORT_PINGS = {"OPENENV_PING_INTERVAL": "0.2", "OPENENV_PING_TIMEOUT": "0.5"}


def test_an_idle_session_survives_while_another_steps_back_to_back() -> None:
    with (
        EchoEnv.from_process(env=_SHORT_PINGS) as busy,
        EchoEnv.from_process(env=_SHORT_PINGS) as idle,
    ):
        busy.reset()
        idle.reset()
        steps, end = 0, time.monotonic() + 10 * 0.5  # ten ping timeouts
        while time.monotonic() < end:
            busy.step(EchoAction(message="x"))
            steps += 1
        assert idle.step(EchoAction(message="alive")).observation.echoed_message == "alive"
        assert busy.state().step_count == steps


def test_an_idle_session_survives_while_another_thread_is_blocked_in_a_call() -> None:
    from openenv.providers.process import LocalProcessProvider

    provider = LocalProcessProvider("tests.slow_echo:app", env=_SHORT_PINGS)
    with (
        EchoEnv.from_provider(provider) as slow,
        EchoEnv.from_process(env=_SHORT_PINGS) as idle,
    ):
        slow.reset()
        idle.reset()
        blocked = threading.Thread(
            target=slow.step, args=(EchoAction(message="slow", metadata={"sleep": 5.0}),)
        )
        blocked.start()
        blocked.join(60)
        assert not blocked.is_alive()
        assert idle.step(EchoAction(message="alive")).observation.echoed_message == "alive"
        assert slow.step(EchoAction(message="slow too")).observation.echoed_message == "slow too"
