"""``/metrics``: exact counts after a known number of steps, errors and refusals, read with
prometheus-client's own parser from a real uvicorn server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from envs.echo_env.client import AsyncEchoEnv
from envs.echo_env.models import EchoAction, EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.client.async_client import AsyncEnvClient
from openenv.exceptions import AuthenticationError, CapacityError, EnvError, NotResetError
from openenv.observability.timings import BUCKETS
from openenv.protocol import PROTOCOL_VERSION, Codec, Hello, Reset, Step, request_type
from openenv.server import ServerConfig, create_app
from openenv.server import metrics as metrics_module
from openenv.server.metrics import DIALECTS, KINDS, SAMPLE_EVERY, ServerMetrics
from openenv.server.session import Session
from tests.conftest import running_server

TOKEN = "metrics-test-token"


class Fragile(EchoEnvironment):
    """Raises on the message "boom"."""

    def step(self, action: EchoAction) -> EchoObservation:
        if action.message == "boom":
            raise RuntimeError("boom")
        return super().step(action)


def http_url(address: str) -> str:
    return address.replace("ws://", "http://").removesuffix("/ws")


async def scrape(
    address: str, token: str | None = TOKEN
) -> dict[tuple[str, frozenset[Any]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{http_url(address)}/metrics", headers=headers)
    response.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


async def test_exact_counts_after_known_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "SAMPLE_EVERY", 1)  # time every step: exact counts
    config = ServerConfig(token=TOKEN, max_sessions=2)
    async with running_server(create_app(Fragile, config=config)) as address:
        async with AsyncEchoEnv(address, token=TOKEN) as env:
            await env.reset()
            for i in range(7):
                await env.step(EchoAction(message=f"m{i}"))
            for _ in range(2):
                with pytest.raises(EnvError):
                    await env.step(EchoAction(message="boom"))
            async with AsyncEchoEnv(address, token=TOKEN) as fresh:
                with pytest.raises(NotResetError):
                    await fresh.step(EchoAction(message="too early"))
                with pytest.raises(CapacityError):  # two sessions open: the third is refused
                    await AsyncEchoEnv(address, token=TOKEN).connect()
            with pytest.raises(AuthenticationError):
                await AsyncEchoEnv(address, token="wrong").connect()
            with pytest.raises(AuthenticationError):
                await AsyncEnvClient(address, ticket="not-a-ticket").connect()
            (fork,) = await env.fork_many(1)
            await fork.step(EchoAction(message="on the fork"))
            await fork.close()
            await env.state()
            samples = await scrape(address)

    assert value(samples, "openenv_server_requests_total", kind="reset", dialect="openenv") == 1
    # 7 answered + 2 that raised on the first session, 1 refused (not reset), 1 on the fork
    assert value(samples, "openenv_server_requests_total", kind="step", dialect="openenv") == 11
    assert value(samples, "openenv_server_requests_total", kind="state", dialect="openenv") == 1
    assert value(samples, "openenv_server_requests_total", kind="fork", dialect="openenv") == 1
    assert value(samples, "openenv_server_requests_total", kind="close", dialect="openenv") == 2
    # Step times are sampled (the first request is timed, then one in 16 while steps are
    # fast): of the 8 steps answered, one or more; test_step_times_are_sampled counts exactly.
    timed = value(samples, "openenv_server_step_seconds_count", dialect="openenv")
    assert 1 <= timed <= 8
    assert value(samples, "openenv_server_step_env_seconds_count", dialect="openenv") == timed
    assert (
        value(samples, "openenv_server_step_seconds_bucket", dialect="openenv", le="+Inf") == timed
    )
    assert value(samples, "openenv_server_errors_total", code="env_error") == 2
    assert value(samples, "openenv_server_errors_total", code="not_reset") == 1
    assert value(samples, "openenv_server_errors_total", code="invalid_message") == 0
    assert value(samples, "openenv_server_sessions_refused_total", reason="capacity") == 1
    assert value(samples, "openenv_server_sessions_refused_total", reason="token") == 1
    assert value(samples, "openenv_server_fork_tickets_refused_total") == 1
    assert value(samples, "openenv_server_forks_total") == 1
    # env, fresh and the fork; the refused ones never opened
    assert value(samples, "openenv_server_sessions_opened_total", dialect="openenv") == 3
    assert value(samples, "openenv_server_sessions") == 1  # the scrape ran inside `env`'s block
    # every request was one frame in; every reply and greeting one frame out (the capacity
    # refusal is sent before its session exists, so it is not a session's frame)
    assert value(samples, "openenv_server_frames_received_total") == 1 + 11 + 1 + 1 + 2
    assert value(samples, "openenv_server_frames_sent_total") == 3 + 1 + 11 + 1 + 1 + 2
    assert value(samples, "openenv_server_received_bytes_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert ("process_cpu_seconds_total", frozenset()) in samples


def _session(env_cls: type[EchoEnvironment], metrics: ServerMetrics) -> Any:
    codec = Codec(request_type(EchoAction))
    hello = Hello(protocol=PROTOCOL_VERSION, env="echo", session_id="s")
    session = Session(env_cls(), codec, hello, ServerConfig(), metrics=metrics)
    session.handle(codec.encode(Reset(id=1)))
    return session, codec


def test_step_times_are_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "_SLOW_STEP_S", float("inf"))  # every step is "fast"
    metrics = ServerMetrics()
    session, codec = _session(EchoEnvironment, metrics)
    for request_id in range(2, 2 + 2 * SAMPLE_EVERY):
        session.handle(codec.encode(Step(request_id, EchoAction(message="x"))))
    # The reset was request 1 (timed: the first request is); then requests 17 and 33.
    assert metrics.hot_steps == 2 * SAMPLE_EVERY
    assert metrics.step_total["openenv"].count == metrics.step_env["openenv"].count == 2


class Slow(EchoEnvironment):
    def step(self, action: EchoAction) -> EchoObservation:
        time.sleep(0.002)  # a step slower than 1 ms: every one is timed
        return super().step(action)


def test_slow_steps_are_all_timed() -> None:
    metrics = ServerMetrics()
    session, codec = _session(Slow, metrics)
    steps = SAMPLE_EVERY + 10
    for request_id in range(2, 2 + steps):
        session.handle(codec.encode(Step(request_id, EchoAction(message="x"))))
    # The reset (request 1) was timed; the first step timed is request 1 + SAMPLE_EVERY, and
    # being slow, every step after it is too.
    assert metrics.step_total["openenv"].count == steps - (SAMPLE_EVERY - 1)
    env = metrics.step_env["openenv"]
    assert sum(env.counts[: BUCKETS.index(0.0025)]) == 0  # none under 2 ms, they slept


async def test_label_sets_are_bounded_and_named_by_convention() -> None:
    async with running_server(create_app(EchoEnvironment, config=ServerConfig())) as address:
        async with AsyncEchoEnv(address) as env:
            await env.reset()
            await env.step(EchoAction(message="x"))
        samples = await scrape(address, token=None)
    kinds = {
        dict(labels)["kind"] for name, labels in samples if name == "openenv_server_requests_total"
    }
    assert kinds == set(KINDS)
    for name, labels in samples:
        if name.startswith("openenv_"):
            assert set(dict(labels)) <= {"kind", "dialect", "code", "reason", "le"}, name
            assert name.endswith(
                ("_total", "_seconds_bucket", "_seconds_sum", "_seconds_count")
            ) or name in {
                "openenv_server_sessions",
                "openenv_server_forks_parked",
            }, name
        if "dialect" in dict(labels):
            assert dict(labels)["dialect"] in DIALECTS


async def test_upstream_dialect_is_counted_apart() -> None:
    import websockets

    async with running_server(create_app(EchoEnvironment, config=ServerConfig())) as address:
        async with websockets.connect(address) as ws:  # no subprotocol: upstream's dialect
            await ws.send('{"type": "reset", "data": {}}')
            await ws.recv()
            for _ in range(3):
                await ws.send('{"type": "step", "data": {"message": "hi"}}')
                await ws.recv()
            await ws.send("not json")
            await ws.recv()
        samples = await scrape(address, token=None)
    assert value(samples, "openenv_server_requests_total", kind="step", dialect="upstream") == 3
    assert value(samples, "openenv_server_step_seconds_count", dialect="upstream") == 3
    assert value(samples, "openenv_server_sessions_opened_total", dialect="upstream") == 1
    assert value(samples, "openenv_server_errors_total", code="invalid_message") == 1


async def test_metrics_want_the_token() -> None:
    async with running_server(
        create_app(EchoEnvironment, config=ServerConfig(token=TOKEN))
    ) as address:
        async with httpx.AsyncClient() as http:
            url = f"{http_url(address)}/metrics"
            assert (await http.get(url)).status_code == 401
            wrong = await http.get(url, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert TOKEN not in wrong.text
            assert (
                await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
            ).status_code == 200


async def test_metrics_off() -> None:
    app = create_app(EchoEnvironment, config=ServerConfig(metrics=False))
    async with running_server(app) as address:
        async with AsyncEchoEnv(address) as env:
            await env.reset()
            await env.step(EchoAction(message="x"))
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{http_url(address)}/metrics")).status_code == 404


def test_config_reads_openenv_metrics() -> None:
    assert ServerConfig.from_env({}).metrics is True
    assert ServerConfig.from_env({"OPENENV_METRICS": "0"}).metrics is False
    assert ServerConfig.from_env({"OPENENV_METRICS": "1"}).metrics is True
