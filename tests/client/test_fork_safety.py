"""Sync clients across fork(): a child makes sessions of its own, an inherited session raises
InheritedSessionError in the child and goes on working in the parent."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import time
from collections.abc import Callable

import gymnasium
import pytest

import openenv.gym  # noqa: F401  (registers openenv/echo-v0)
from envs.echo_env import EchoAction, EchoEnv
from openenv import Endpoint, InheritedSessionError
from tests.conftest import openenv_children

# Sync clients hand their shared loop to a background thread once they have been idle this
# long (50 ms); a fork then copies a loop whose driver exists only in the parent.
IDLE_S = 0.3


def in_forked_child(work: Callable[[], str], timeout: float = 60.0) -> str:
    """Run ``work`` in a child made by os.fork() and return what it returned (or raised)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running the parent's clean-ups
        os.close(read)
        try:
            outcome = work()
        except BaseException as exc:
            outcome = f"raised {type(exc).__name__}: {exc}"
        os.write(write, outcome.encode())
        os._exit(0)
    os.close(write)
    try:
        chunks = []
        while select.select([read], [], [], timeout)[0]:
            if not (chunk := os.read(read, 65536)):  # the child has exited
                return b"".join(chunks).decode()
            chunks.append(chunk)
        pytest.fail(f"the forked child did not finish within {timeout} s")
    finally:
        os.close(read)
        if os.waitpid(pid, os.WNOHANG) == (0, 0):  # hung, or the test was interrupted
            os.kill(pid, signal.SIGKILL)  # (or just exiting: then this changes nothing)
            os.waitpid(pid, 0)


def test_a_child_forked_after_sync_use_starts_and_uses_sessions_of_its_own() -> None:
    with EchoEnv.from_process() as env:
        env.reset()
        env.step(EchoAction(message="parent"))
    time.sleep(IDLE_S)  # the parent idles: its loop is driven in the background

    def child() -> str:
        with EchoEnv.from_process() as own:
            own.reset()
            return own.step(EchoAction(message="child")).observation.echoed_message

    assert in_forked_child(child) == "child"
    assert openenv_children() == []


def test_an_inherited_session_raises_in_the_child_and_keeps_working_in_the_parent() -> None:
    with EchoEnv.from_process(env={"OPENENV_MAX_SESSIONS": "4"}) as env:
        env.reset()
        env.step(EchoAction(message="before"))
        time.sleep(IDLE_S)
        parent = os.getpid()

        def child() -> str:
            with pytest.raises(InheritedSessionError) as caught:
                env.step(EchoAction(message="from the child"))
            assert caught.value.owner_pid == parent
            for call in (env.reset, env.state, env.connect, env.fork):
                with pytest.raises(InheritedSessionError):
                    call()
            assert not env.usable
            # The same server, through a session of the child's own.
            with EchoEnv(env.endpoint) as own:
                own.reset()
                echoed = own.step(EchoAction(message="own")).observation.echoed_message
            env.close()  # lets go of the parent's session: no close frame, the server stays
            assert env.closed
            return echoed

        assert in_forked_child(child) == "own"
        assert env.usable and not env.closed
        assert env.step(EchoAction(message="after")).observation.echoed_message == "after"
        assert env.state().step_count == 2  # the child's attempt never reached the server


def test_a_child_forked_in_the_middle_of_nothing_but_idle_sessions_closes_nothing() -> None:
    # The child exits while holding copies of the parent's session: nothing it does (or its
    # exit) reaches the parent's connection or stops the parent's server.
    with EchoEnv.from_process() as env:
        env.reset()
        time.sleep(IDLE_S)
        assert in_forked_child(lambda: "done") == "done"
        assert env.step(EchoAction(message="still")).observation.echoed_message == "still"


def _episode(endpoint: Endpoint, index: int) -> str:
    with EchoEnv(endpoint) as env:
        env.reset()
        return env.step(EchoAction(message=f"worker {index}")).observation.echoed_message


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_workers_open_their_own_sessions(method: str) -> None:
    with EchoEnv.from_process(env={"OPENENV_MAX_SESSIONS": "8"}) as env:
        env.reset()
        env.step(EchoAction(message="parent"))
        time.sleep(IDLE_S)
        with multiprocessing.get_context(method).Pool(2) as pool:
            work = pool.starmap_async(_episode, [(env.endpoint, i) for i in range(4)])
            assert work.get(timeout=90) == [f"worker {i}" for i in range(4)]
        assert env.step(EchoAction(message="parent")).observation.echoed_message == "parent"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("num_envs", [2, 8])
def test_gymnasium_make_vec_async_after_make_in_the_parent(num_envs: int) -> None:
    single = gymnasium.make("openenv/echo-v0")
    try:
        single.reset(seed=0)
        single.step({"message": "parent"})
        time.sleep(IDLE_S)
        envs = gymnasium.make_vec("openenv/echo-v0", num_envs=num_envs, vectorization_mode="async")
        try:
            observations, _ = envs.reset(seed=0)
            assert len(observations["echoed_message"]) == num_envs
            observations, *_ = envs.step(envs.action_space.sample())
            assert len(observations["message_length"]) == num_envs
        finally:
            envs.close()
        single.step({"message": "parent again"})
    finally:
        single.close()
    assert openenv_children() == []


@pytest.mark.timeout(120)
def test_gymnasium_async_vector_env_with_forked_workers() -> None:
    def make() -> gymnasium.Env:  # type: ignore[type-arg]
        return gymnasium.make("openenv/echo-v0")

    single = make()
    try:
        single.reset()
        time.sleep(IDLE_S)
        envs = gymnasium.vector.AsyncVectorEnv([make, make], context="fork")
        try:
            envs.reset(seed=0)
            observations, *_ = envs.step(envs.action_space.sample())
            assert len(observations["message_length"]) == 2
        finally:
            envs.close()
    finally:
        single.close()
