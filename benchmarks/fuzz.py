"""Protocol fuzzing against a live env server: every answer must be well-formed, the server
must never crash or stall, and a normal session must work afterwards.

Frames come from families of hostile input: random bytes, truncated and bit-flipped valid
frames, valid msgpack of the wrong shape, deep nesting, huge strings, unknown tags, wrong ids,
text frames with garbage or JSON, oversized frames, and floods of pings.

    .venv/bin/python benchmarks/fuzz.py [--cases 100000] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed

from envs.echo_env import AsyncEchoEnv, EchoAction
from envs.echo_env.models import EchoObservation
from openenv.endpoint import Endpoint
from openenv.protocol import (
    SUBPROTOCOL,
    Codec,
    Error,
    ErrorCode,
    Hello,
    Reset,
    Step,
    reply_type,
    request_type,
)
from openenv.types import State

__all__ = ["FRAME_FAMILIES", "FuzzReport", "check_reply", "fuzz"]

_REPLIES = Codec(reply_type(EchoObservation, State))
_REQUESTS = Codec(request_type(EchoAction))
_STALL_S = 5.0
_CODES = {code.value for code in ErrorCode}


@dataclass
class FuzzReport:
    cases: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    health_checks: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "replies": dict(self.replies),
            "closes": {str(k): v for k, v in self.closes.items()},
            "failures": self.failures[:20],
            "failure_count": len(self.failures),
            "health_checks": self.health_checks,
            "seconds": round(self.seconds, 1),
        }


def check_reply(frame: bytes | str, reply: bytes | str) -> str:
    """Classify the server's answer to ``frame``; raise AssertionError if it is malformed.

    A reply must come in the frame's own kind (JSON for text), decode into a reply type, and be
    an ``Error`` with a known code unless the frame happened to be a valid request.
    """
    assert isinstance(reply, str) == isinstance(frame, str), "reply kind differs from request"
    decoded = _REPLIES.decode(reply)
    if isinstance(decoded, Error):
        assert decoded.code in _CODES, f"unknown error code {decoded.code!r}"
        assert decoded.message, "error without a message"
        return decoded.code
    request = _REQUESTS.decode(frame)  # raises unless the fuzzer made a valid request by chance
    assert getattr(decoded, "id", None) == request.id, "reply id does not echo the request"
    return type(decoded).__name__.lower()


# Frame families; each takes a Random and returns one frame.


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 5, 17, 100, 1000]))


def _valid(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return _REQUESTS.encode(Step(id=rng.randrange(2**31), action=EchoAction(message="hi")))
    return _REQUESTS.encode(Reset(id=rng.randrange(2**31), seed=rng.randrange(100)))


def _truncated(rng: random.Random) -> bytes:
    frame = _valid(rng)
    return frame[: rng.randrange(len(frame))]


def _bit_flipped(rng: random.Random) -> bytes:
    frame = bytearray(_valid(rng))
    for _ in range(rng.randint(1, 4)):
        frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
    return bytes(frame)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randrange(-1000, 1000)])
    if kind == 2:
        return rng.random() * 1e6
    if kind == 3:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(20)))
    if kind == 4:
        return rng.randbytes(rng.randrange(20))
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        str(_random_value(rng, depth + 1)): _random_value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def _wrong_shape(rng: random.Random) -> bytes:
    message: dict[str, Any] = {"type": rng.choice(["reset", "step", "get_state", "close", "hello"])}
    for key in rng.sample(["id", "action", "seed", "options", "episode_id"], rng.randrange(4)):
        message[key] = _random_value(rng)
    if rng.random() < 0.3:
        message = _random_value(rng)
    return msgspec.msgpack.encode(message)


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([100, 1000, 100_000])
    return b"\x91" * depth + b"\xc0"


def _huge_string(rng: random.Random) -> bytes:
    size = rng.choice([10_000, 100_000, 500_000])
    return _REQUESTS.encode(Step(id=1, action=EchoAction(message="y" * size)))


def _unknown_tag(rng: random.Random) -> bytes:
    tag = rng.choice(["", "RESET", "jump", "step ", "\x00", "hello", "result", "error"])
    return msgspec.msgpack.encode({"type": tag, "id": rng.randrange(100)})


def _wrong_id(rng: random.Random) -> bytes:
    bad: Any = rng.choice([-1, 2**64 - 1, "7", 1.5, None, [], {"a": 1}])
    return msgspec.msgpack.encode({"type": "reset", "id": bad})


def _text(rng: random.Random) -> str:
    choice = rng.randrange(4)
    if choice == 0:
        return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(50)))
    if choice == 1:
        return (
            '{"type": "step", "id": 3, "action": {"message": '
            + rng.choice(["1", "null", "[]", '"ok"'])
            + "}}"
        )
    if choice == 2:
        return json.dumps(_random_value(rng), default=str)
    return '{"type": "reset", "id": ' + str(rng.randrange(10**6)) + "}"


FRAME_FAMILIES: dict[str, Callable[[random.Random], bytes | str]] = {
    "random_bytes": _random_bytes,
    "truncated": _truncated,
    "bit_flipped": _bit_flipped,
    "wrong_shape": _wrong_shape,
    "deep_nesting": _deep,
    "huge_string": _huge_string,
    "unknown_tag": _unknown_tag,
    "wrong_id": _wrong_id,
    "text": _text,
    "valid": _valid,
}


# The run.


async def _open(endpoint: Endpoint) -> ClientConnection:
    headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else None
    options: dict[str, Any] = {
        "additional_headers": headers,
        "compression": None,
        "proxy": None,
        "max_size": None,
        "subprotocols": [SUBPROTOCOL],
    }
    if endpoint.unix_socket:
        ws = await unix_connect(endpoint.unix_socket, endpoint.url, **options)
    else:
        ws = await connect(endpoint.url, **options)
    assert isinstance(_REPLIES.decode(await ws.recv()), Hello)
    return ws


async def _healthy(endpoint: Endpoint) -> None:
    """A normal session works: the server neither crashed nor stalled."""
    async with asyncio.timeout(_STALL_S):
        async with AsyncEchoEnv(endpoint) as env:
            await env.reset()
            result = await env.step(EchoAction(message="after fuzz"))
            assert result.observation.echoed_message == "after fuzz"


async def fuzz(
    endpoint: Endpoint, cases: int, seed: int = 0, max_frame_bytes: int = 1 << 20
) -> FuzzReport:
    """Send ``cases`` hostile frames to the server at ``endpoint`` and check every answer."""
    rng = random.Random(seed)
    report = FuzzReport()
    families = list(FRAME_FAMILIES.items())
    began = time.perf_counter()
    ws = await _open(endpoint)
    try:
        for case in range(cases):
            name, make = families[case % len(families)]
            frame = make(rng)
            report.cases += 1
            try:
                if case % 97 == 0:
                    for _ in range(50):  # a flood of pings, then the frame
                        await ws.ping()
                async with asyncio.timeout(_STALL_S):
                    await ws.send(frame)
                    answer = await ws.recv()
                kind = check_reply(frame, answer)
                report.replies[kind] += 1
                if kind == "goodbye":  # a valid Close by chance: the server ends the session
                    await ws.close()
                    ws = await _open(endpoint)
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 1006
                report.closes[code] += 1
                if not (code == 1009 and len(frame) > max_frame_bytes):
                    report.failures.append(f"case {case} ({name}): connection closed with {code}")
                ws = await _open(endpoint)
            except (AssertionError, msgspec.DecodeError, TimeoutError) as exc:
                report.failures.append(f"case {case} ({name}): {type(exc).__name__}: {exc}"[:300])
                await ws.close()
                ws = await _open(endpoint)
            if case % 1000 == 999:
                await _healthy(endpoint)
                report.health_checks += 1
    finally:
        await ws.close()
    await _healthy(endpoint)
    report.health_checks += 1
    report.seconds = time.perf_counter() - began
    return report


async def _main(args: argparse.Namespace) -> FuzzReport:
    from openenv.providers.process import LocalProcessProvider

    limits = {"OPENENV_MAX_FRAME_BYTES": str(args.max_frame_bytes)}
    async with LocalProcessProvider("envs.echo_env", env=limits) as provider:
        server = await provider.start()
        return await fuzz(server.endpoint, args.cases, args.seed, args.max_frame_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-frame-bytes", type=int, default=256 * 1024)
    parser.add_argument("--json")
    args = parser.parse_args()
    report = asyncio.run(_main(args))
    print(json.dumps(report.as_json(), indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report.as_json(), out, indent=2)
    raise SystemExit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
