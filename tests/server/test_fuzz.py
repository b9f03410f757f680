"""Hypothesis-driven fuzzing of a live env server (a bounded slice of benchmarks/fuzz.py).

Every frame gets a well-formed answer (or a 1009 close when oversized), and the server keeps
serving: the same connection, or a fresh one, works afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, unix_connect
from websockets.typing import Subprotocol

from benchmarks.fuzz import FRAME_FAMILIES, _healthy, check_reply, fuzz
from envs.echo_env import EchoAction
from envs.echo_env.models import EchoObservation
from openenv.client.portal import run_sync
from openenv.endpoint import Endpoint
from openenv.protocol import SUBPROTOCOL, CloseCode, Codec, Hello, Step, reply_type, request_type
from openenv.providers import LocalProcessProvider
from openenv.types import State

MAX_FRAME = 64 * 1024

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["reset", "step", "get_state", "close", "hello", "result"])
        | st.text(max_size=8)
    },
    optional={
        "id": values,
        "action": values | st.fixed_dictionaries({"message": values}),
        "seed": values,
        "options": values,
        "episode_id": values,
    },
)
frames = st.one_of(
    st.binary(max_size=2000),
    values.map(msgspec.msgpack.encode),
    messages.map(msgspec.msgpack.encode),
    messages.map(lambda m: json.dumps(m, default=repr)),
    st.text(max_size=200),
    st.tuples(st.sampled_from(sorted(FRAME_FAMILIES)), st.randoms(use_true_random=False)).map(
        lambda pick: FRAME_FAMILIES[pick[0]](random.Random(pick[1].random()))
    ),
)

replies = Codec(reply_type(EchoObservation, State))
requests = Codec(request_type(EchoAction))


@pytest.fixture(scope="module")
def live_server() -> Iterator[Endpoint]:
    provider = LocalProcessProvider(
        "envs.echo_env", env={"OPENENV_MAX_FRAME_BYTES": str(MAX_FRAME)}
    )
    server = run_sync(provider.start())
    yield server.endpoint
    run_sync(provider.close())


@contextmanager
def open_session(endpoint: Endpoint) -> Iterator[ClientConnection]:
    assert endpoint.unix_socket is not None
    with unix_connect(
        endpoint.unix_socket,
        endpoint.url,
        additional_headers={"Authorization": f"Bearer {endpoint.token}"},
        compression=None,
        max_size=None,
        open_timeout=5,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
    ) as ws:
        assert isinstance(replies.decode(ws.recv(timeout=5)), Hello)
        yield ws


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames)
def test_every_frame_gets_a_well_formed_answer_and_the_session_survives(
    live_server: Endpoint, frame: bytes | str
) -> None:
    with open_session(live_server) as ws:
        try:
            ws.send(frame)
            answer = ws.recv(timeout=5)
        except ConnectionClosed as closed:
            # Only an oversized frame may end the session, and always with a 1009 close frame
            # (the server drains the rest of the frame instead of resetting the connection).
            assert len(frame) > MAX_FRAME, f"session ended by a {len(frame)}-byte frame"
            assert closed.rcvd is not None, "closed without a close frame"
            assert closed.rcvd.code == CloseCode.TOO_BIG
            return
        kind = check_reply(frame, answer)
        if kind == "goodbye":
            return
        probe = requests.encode(Step(id=2**40, action=EchoAction(message="alive")))
        ws.send(probe)
        after = replies.decode(ws.recv(timeout=5))
        assert getattr(after, "id", None) == 2**40


def test_a_longer_seeded_run_finds_nothing(live_server: Endpoint) -> None:
    report = asyncio.run(fuzz(live_server, cases=3000, seed=7, max_frame_bytes=MAX_FRAME))
    assert report.failures == []
    assert report.cases == 3000
    assert report.closes.get(CloseCode.TOO_BIG, 0) > 0  # oversized frames were among them
    asyncio.run(_healthy(live_server))


def test_json_requests_get_json_errors(live_server: Endpoint) -> None:
    with open_session(live_server) as ws:
        ws.send(requests.encode_text(Step(id=1, action=EchoAction(message="x"))))
        assert json.loads(ws.recv(timeout=5))["code"] == "not_reset"
