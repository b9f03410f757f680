"""Rules checked by driving one env instance directly, as a session would: ``init``, ``reset``,
``step``, ``state``, ``round-trip``, ``done``, ``blocking``, ``close``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from openenv.server.env_call import EnvCaller
from openenv.server.environment import Environment
from openenv.testing.failures import Failure
from openenv.types import Action

__all__ = ["DirectRun", "round_trip", "run_direct"]

EPISODE_ID = "openenv-check"
_TICK_S = 0.005
_CODECS: tuple[tuple[str, Callable[[Any], bytes], Callable[..., Any]], ...] = (
    ("msgpack", msgspec.msgpack.encode, msgspec.msgpack.decode),
    ("JSON", msgspec.json.encode, msgspec.json.decode),
)


class _Broken(Exception):
    """Stops the run: what follows would only repeat this failure."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure


@dataclass
class DirectRun:
    """What driving the env directly found."""

    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    steps: int = 0
    reached_done: bool = False


def round_trip(value: msgspec.Struct) -> Failure | None:
    """``round-trip``: ``value`` comes back equal from msgpack and from JSON, decoded typed."""
    kind = type(value)
    for name, encode, decode in _CODECS:
        try:
            back = decode(encode(value), type=kind)
        except (TypeError, ValueError) as exc:
            where = _path_field(str(exc))
            subject = f"{kind.__name__}.{where}" if where else kind.__name__
            return Failure("round-trip", subject, f"does not survive {name}: {exc}")
        if back != value:
            for item in msgspec.structs.fields(kind):
                sent, got = getattr(value, item.name), getattr(back, item.name)
                if sent != got:
                    detail = f"changes through {name}: sent {sent!r}, got {got!r}"
                    return Failure("round-trip", f"{kind.__name__}.{item.name}", detail)
    return None


def _path_field(detail: str) -> str:
    _, _, path = detail.partition("`$.")
    return path.rstrip("`").split(".")[0].split("[")[0]


class _Driver:
    """Calls an env's methods the way a session does, timing how long each held the loop."""

    def __init__(self, env: Environment[Any, Any, Any], threshold: float) -> None:
        self.env = env
        self.cls = type(env)
        self.threshold = threshold
        self.held: dict[str, list[float]] = {"reset": [], "step": []}
        self._caller = EnvCaller(env, step_timeout=None)

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.env, name)
        if self._caller.thread is not None and not inspect.iscoroutinefunction(method):
            return await self._caller.begin(method, *args, **kwargs)  # on the env's thread
        watch = _LoopWatch()
        watcher = asyncio.create_task(watch.run())
        try:
            started = time.perf_counter()
            result = self._caller.begin(method, *args, **kwargs)
            held = time.perf_counter() - started  # a sync call holds the loop all along
            if inspect.isawaitable(result):
                result = await result
            self.held[name].append(max(held, watch.max_gap))
            return result
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def close(self) -> None:
        if self._caller.thread is not None:
            self._caller.thread.shutdown(wait=False, cancel_futures=True)


class _LoopWatch:
    """The longest the loop went without running this task, beyond its own sleep."""

    def __init__(self) -> None:
        self.max_gap = 0.0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(_TICK_S)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last - _TICK_S)
            last = now


async def run_direct(
    env_cls: type[Environment[Any, Any, Any]],
    env_kwargs: dict[str, Any],
    actions: Sequence[Action],
    blocking_threshold: float,
) -> DirectRun:
    """Construct the env, reset, step through ``actions`` (stopping after ``done``), reset
    again and close it, checking each answer."""
    run = DirectRun()
    name = env_cls.__name__
    try:
        env = env_cls(**env_kwargs)
    except Exception as exc:
        run.failures.append(Failure("init", f"{name}()", f"raised {_describe(exc)}"))
        return run
    driver = _Driver(env, blocking_threshold)
    try:
        await _episode(driver, actions, run)
    except _Broken as broken:
        run.failures.append(broken.failure)
    finally:
        driver.close()
        try:
            closing = env.close()
            if inspect.isawaitable(closing):
                await closing
        except Exception as exc:
            run.failures.append(Failure("close", f"{name}.close", f"raised {_describe(exc)}"))
    run.failures += _blocking(driver)
    return run


async def _episode(driver: _Driver, actions: Sequence[Action], run: DirectRun) -> None:
    first = await _observe(driver, "reset", seed=0, episode_id=EPISODE_ID)
    if first.done:
        raise _Broken(_done_at_reset(driver, first))
    _check_state(await _state(driver), EPISODE_ID, 0, "after reset", driver)
    for count, action in enumerate(actions, start=1):
        observation = await _observe(driver, "step", action)
        run.steps = count
        _check_state(await _state(driver), EPISODE_ID, count, f"after {count} step(s)", driver)
        if observation.done:
            run.reached_done = True
            await _after_done(driver, action, count)
            break
    if not run.reached_done:
        run.notes.append(f"done: no episode ended within {run.steps} step(s); not checked")
    again = await _observe(driver, "reset", seed=1, episode_id=f"{EPISODE_ID}-2")
    if again.done:
        raise _Broken(_done_at_reset(driver, again))
    _check_state(await _state(driver), f"{EPISODE_ID}-2", 0, "after a second reset", driver)


async def _after_done(driver: _Driver, action: Action, count: int) -> None:
    """``done``: once done, an episode stays done until reset: a further step returns done
    again or raises (the client gets ``env_error``); it never starts a new episode itself."""
    try:
        observation = await driver.call("step", action)
    except Exception:
        return  # refusing to step a finished episode is allowed
    if isinstance(observation, driver.cls.observation_type) and not observation.done:
        detail = (
            f"a step after the episode ended (step {count}) returned done=False; an episode "
            "stays done until reset"
        )
        raise _Broken(Failure("done", f"{driver.cls.__name__}.step", detail))


def _done_at_reset(driver: _Driver, observation: Any) -> Failure:
    subject = f"{type(observation).__name__}.done"
    return Failure("reset", subject, "True after reset; an episode cannot end before it starts")


async def _observe(driver: _Driver, method: str, *args: Any, **kwargs: Any) -> Any:
    name = driver.cls.__name__
    try:
        observation = await driver.call(method, *args, **kwargs)
    except Exception as exc:
        raise _Broken(Failure(method, f"{name}.{method}", f"raised {_describe(exc)}")) from exc
    expected = driver.cls.observation_type
    if not isinstance(observation, expected):
        detail = f"returned {type(observation).__name__}, not {expected.__name__}"
        raise _Broken(Failure(method, f"{name}.{method}", detail))
    broken = round_trip(observation)
    if broken is not None:
        raise _Broken(broken)
    return observation


async def _state(driver: _Driver) -> Any:
    name = driver.cls.__name__
    try:
        state = driver.env.state
    except Exception as exc:
        raise _Broken(Failure("state", f"{name}.state", f"raised {_describe(exc)}")) from exc
    expected = driver.cls.state_type
    if not isinstance(state, expected):
        detail = f"returned {type(state).__name__}, not {expected.__name__}"
        raise _Broken(Failure("state", f"{name}.state", detail))
    broken = round_trip(state)
    if broken is not None:
        raise _Broken(broken)
    return state


def _check_state(state: Any, episode_id: str, steps: int, when: str, driver: _Driver) -> None:
    kind = type(state).__name__
    if state.episode_id != episode_id:
        detail = f"is {state.episode_id!r} {when}; reset(episode_id={episode_id!r}) must set it"
        raise _Broken(Failure("state", f"{kind}.episode_id", detail))
    if state.step_count != steps:
        detail = f"is {state.step_count} {when}; it counts the episode's steps"
        raise _Broken(Failure("state", f"{kind}.step_count", detail))


def _blocking(driver: _Driver) -> list[Failure]:
    """``blocking``: a method that holds the event loop on every call stalls every other
    session of its server; such an env declares ``blocking = True`` (or is async)."""
    failures = []
    for method, held in driver.held.items():
        if held and min(held) >= driver.threshold:
            name = driver.cls.__name__
            detail = (
                f"held the event loop for {driver.threshold} s or more on each of its "
                f"{len(held)} call(s); set blocking = True on {name}, or make {method} async"
            )
            failures.append(Failure("blocking", f"{name}.{method}", detail))
    return failures


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
