"""Every rule of ``check_env``: a tiny env that breaks it, and the exact line it gets."""

from __future__ import annotations

import itertools
import time
import types
from typing import Any, ClassVar

import msgspec
import pytest

from openenv.server import Environment, create_app
from openenv.testing import RULES, EnvCheckError, check_env
from openenv.types import Action, Observation, State


class Act(Action):
    n: int


class Obs(Observation):
    value: int = 0


class Good(Environment[Act, Obs, State]):
    """Ends its episode after three steps and stays ended until reset."""

    def __init__(self) -> None:
        self._state = State()

    def reset(self, seed: int | None = None, episode_id: str | None = None, **options: Any) -> Obs:
        self._state = State(episode_id=episode_id)
        return Obs(reward=0.0)

    def step(self, action: Act) -> Obs:
        self._state.step_count += 1
        return Obs(value=action.n, reward=1.0, done=self._state.step_count >= 3)

    @property
    def state(self) -> State:
        return self._state


def failures(env: Any, **options: Any) -> list[str]:
    with pytest.raises(EnvCheckError) as caught:
        check_env(env, **options)
    lines = str(caught.value).splitlines()
    assert lines == [str(failure) for failure in caught.value.failures]
    return lines


def test_a_good_env_passes_and_reaches_done() -> None:
    report = check_env(Good)
    assert (report.env, report.steps, report.notes) == ("Good", 3, [])


def test_rules_are_listed_in_order() -> None:
    assert RULES[:4] == ("import", "types", "schema", "evolution") and len(set(RULES)) == len(RULES)


# types, schema, evolution: the declared types.


def test_types() -> None:
    # Generic arguments are checked when the class is made; attributes set by hand on an
    # unparameterized Environment are not, so the checker looks.
    class BadTypes(Environment):  # type: ignore[type-arg]
        action_type = dict  # type: ignore[assignment]
        __init__, reset, step, state = Good.__init__, Good.reset, Good.step, Good.state

    assert failures(BadTypes) == [
        "types: BadTypes.action_type: dict is not a subclass of openenv.types.Action"
    ]


def test_schema() -> None:
    class ComplexObs(Observation):
        c: complex = 0j

    class BadSchema(Good, Environment[Act, ComplexObs, State]):
        pass

    assert failures(BadSchema) == [
        "schema: ComplexObs.c: no JSON Schema for its type (type <class 'complex'> is not "
        "supported)"
    ]


def test_evolution_required_field_after_a_default() -> None:
    class LateObs(Observation, kw_only=True):  # else msgspec itself refuses the order
        first: int  # the first version's required fields come first: fine
        value: int = 0
        extra: int  # added later without a default

    class Late(Good, Environment[Act, LateObs, State]):
        pass

    assert failures(Late) == [
        "evolution: LateObs.extra: required, but declared after 'value', which has a default: "
        "a field added after the first version needs a default"
    ]


def test_evolution_forbid_unknown_fields() -> None:
    class StrictAct(Action, forbid_unknown_fields=True):
        n: int

    class Strict(Good, Environment[StrictAct, Obs, State]):
        pass

    assert failures(Strict) == [
        "evolution: StrictAct: forbid_unknown_fields=True makes older peers refuse messages "
        "with new fields"
    ]


# init, reset, step, state, round-trip, done, blocking, close: one instance, driven directly.


def test_init() -> None:
    class NoInit(Good):
        def __init__(self) -> None:
            raise OSError("no device")

    assert failures(NoInit) == ["init: NoInit(): raised OSError: no device"]


def test_reset_raises() -> None:
    class Raises(Good):
        def reset(self, seed: int | None = None, episode_id: str | None = None, **o: Any) -> Obs:
            raise KeyError("seed")

    assert failures(Raises) == ["reset: Raises.reset: raised KeyError: 'seed'"]


def test_reset_returns_the_wrong_type() -> None:
    class WrongType(Good):
        def reset(self, seed: int | None = None, episode_id: str | None = None, **o: Any) -> Any:
            super().reset(seed, episode_id)
            return {"value": 0}

    assert failures(WrongType) == ["reset: WrongType.reset: returned dict, not Obs"]


def test_reset_done() -> None:
    class OverAtOnce(Good):
        def reset(self, seed: int | None = None, episode_id: str | None = None, **o: Any) -> Obs:
            super().reset(seed, episode_id)
            return Obs(done=True)

    assert failures(OverAtOnce) == [
        "reset: Obs.done: True after reset; an episode cannot end before it starts"
    ]


def test_step_raises() -> None:
    class Crashes(Good):
        def step(self, action: Act) -> Obs:
            return Obs(value=1 // action.n)

    assert failures(Crashes) == [
        "step: Crashes.step: raised ZeroDivisionError: integer division or modulo by zero"
    ]


def test_step_without_an_example_action() -> None:
    class Pattern(Action):
        key: msgspec.Raw

    class NoSample(Good, Environment[Pattern, Obs, State]):
        pass

    assert failures(NoSample) == [
        "step: Pattern.key: no example action can be made (a value of Raw); pass actions= to "
        "check_env"
    ]


def test_state_step_count() -> None:
    class Uncounted(Good):
        def step(self, action: Act) -> Obs:
            return Obs(value=action.n)

    assert failures(Uncounted) == [
        "state: State.step_count: is 0 after 1 step(s); it counts the episode's steps"
    ]


def test_state_episode_id() -> None:
    class Forgetful(Good):
        def reset(self, seed: int | None = None, episode_id: str | None = None, **o: Any) -> Obs:
            self._state = State()
            return Obs()

    assert failures(Forgetful) == [
        "state: State.episode_id: is None after reset; reset(episode_id='openenv-check') must "
        "set it"
    ]


def test_round_trip_value_changes() -> None:
    class Tuples(Good):
        def step(self, action: Act) -> Obs:
            self._state.step_count += 1
            return Obs(metadata={"pair": (1, 2)})

    assert failures(Tuples) == [
        "round-trip: Obs.metadata: changes through msgpack: sent {'pair': (1, 2)}, got "
        "{'pair': [1, 2]}"
    ]


def test_round_trip_wrong_field_type() -> None:
    class Mistyped(Good):
        def step(self, action: Act) -> Obs:
            self._state.step_count += 1
            return Obs(value="three")  # type: ignore[arg-type]

    assert failures(Mistyped) == [
        "round-trip: Obs.value: does not survive msgpack: Expected `int`, got `str` - at `$.value`"
    ]


def test_done_episodes_stay_done() -> None:
    class Restarts(Good):
        def step(self, action: Act) -> Obs:
            self._state.step_count += 1
            return Obs(done=self._state.step_count == 3)  # step 4 quietly goes on

    assert failures(Restarts) == [
        "done: Restarts.step: a step after the episode ended (step 3) returned done=False; an "
        "episode stays done until reset"
    ]


def test_a_step_after_done_may_raise() -> None:
    class Refuses(Good):
        def step(self, action: Act) -> Obs:
            if self._state.step_count == 3:
                raise RuntimeError("episode over")
            return super().step(action)

    assert check_env(Refuses).steps == 3


class Sleeps(Good):
    def step(self, action: Act) -> Obs:
        time.sleep(0.08)  # blocking I/O, say
        return super().step(action)


def test_blocking() -> None:
    # 4 calls: three steps to the end of the episode, then the one checking it stays done.
    assert failures(Sleeps) == [
        "blocking: Sleeps.step: held the event loop for 0.05 s or more on each of its 4 call(s); "
        "set blocking = True on Sleeps, or make step async"
    ]


def test_blocking_declared_or_async_passes() -> None:
    class Declared(Sleeps):
        blocking = True

    class Awaits(Good):
        async def step(self, action: Act) -> Obs:  # type: ignore[override]
            import asyncio

            await asyncio.sleep(0.08)
            return super().step(action)

    check_env(Declared)
    check_env(Awaits)


def test_close() -> None:
    class LeakyClose(Good):
        def close(self) -> None:
            raise RuntimeError("already closed")

    assert failures(LeakyClose) == ["close: LeakyClose.close: raised RuntimeError: already closed"]


# not_reset, isolation, determinism: through the app, over in-process sessions.


class _AutoReset:
    """A server that resets a session itself on its first request: what not_reset catches."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.state = inner.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from openenv.protocol import Codec, Reset, request_type

        codec: Codec[Any] = Codec(request_type(Act))
        pending = [{"type": "websocket.connect"}]
        swallow = [False]

        async def receive_with_reset() -> Any:
            if pending:
                return pending.pop(0)
            message = await receive()
            if not swallow[0] and message["type"] == "websocket.receive":
                swallow[0] = True
                pending.append(message)
                return {"type": "websocket.receive", "bytes": codec.encode(Reset(id=0))}
            return message

        replies = [0]

        async def send_but_the_reset_reply(message: Any) -> None:
            if message["type"] == "websocket.send":
                replies[0] += 1
                if replies[0] == 2:  # 1 is the greeting, 2 answers the injected reset
                    return
            await send(message)

        await receive()  # the client's connect; ours is replayed above
        await self.inner(scope, receive_with_reset, send_but_the_reset_reply)


def test_not_reset() -> None:
    module = types.ModuleType("auto_reset")
    module.app = _AutoReset(create_app(Good))  # type: ignore[attr-defined]
    assert failures(module) == [
        "not_reset: step (msgpack frames): step before reset answered Result, not a not_reset error"
    ]


def test_isolation_class_attribute() -> None:
    class Shared(Good):
        shared: ClassVar[State] = State()

        def reset(self, seed: int | None = None, episode_id: str | None = None, **o: Any) -> Obs:
            Shared.shared.episode_id, Shared.shared.step_count = episode_id, 0
            return Obs()

        def step(self, action: Act) -> Obs:
            Shared.shared.step_count += 1
            return Obs(value=action.n)

        @property
        def state(self) -> State:
            return Shared.shared

    assert failures(Shared) == [
        "isolation: State.episode_id: session 1 reads 'openenv-check-b', not its own episode: "
        "sessions share state (a class attribute or a module global?)"
    ]


def test_isolation_shared_through_the_apps_env_kwargs() -> None:
    class Counter(Good):
        def __init__(self, counts: list[int]) -> None:
            super().__init__()
            self.counts = counts

        def step(self, action: Act) -> Obs:
            self.counts.append(1)
            self._state.step_count = len(self.counts)
            return Obs(value=action.n)

    module = types.ModuleType("shared_kwargs")
    module.app = create_app(Counter, env_kwargs={"counts": []})  # type: ignore[attr-defined]
    # Directly, the one instance counts right; served, sessions share the list: 32 steps of
    # the direct run, 2 of the frames check, then session 1's 2.
    assert failures(module) == [
        "isolation: State.step_count: session 1 reads 36 after its 2 step(s): sessions share "
        "state (a class attribute or a module global?)"
    ]


def test_determinism() -> None:
    resets = itertools.count()

    class Dice(Good):
        deterministic = True

        def reset(self, seed: int | None = None, episode_id: str | None = None, **o: Any) -> Obs:
            super().reset(seed, episode_id)
            return Obs(value=next(resets))  # ignores the seed

    # Resets before the two compared sessions: 2 direct, 2 in the frames check, 2 in isolation.
    assert failures(Dice) == [
        "determinism: Obs.value: differs at reset between two sessions reset with seed 7 (6 vs "
        "7), but Dice.deterministic is True"
    ]
    Dice.deterministic = False
    check_env(Dice)  # the same env, not claiming it, passes


def test_check_env_takes_a_package_path_and_reports_a_missing_env(tmp_path: Any) -> None:
    (tmp_path / "empty_pkg").mkdir()
    (tmp_path / "empty_pkg" / "__init__.py").write_text("")
    assert failures(str(tmp_path / "empty_pkg")) == [
        "import: empty_pkg: no env found: expected an app made by create_app (its "
        "server.app:app) or exactly one Environment subclass, found 0"
    ]


async def test_check_env_works_inside_a_running_loop() -> None:
    assert check_env(Good).steps == 3


def test_an_app_with_a_token_is_checked_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENENV_TOKEN", "s3cret")  # as in a container: the app wants it
    module = types.ModuleType("with_token")
    module.app = create_app(Good)  # type: ignore[attr-defined]
    assert module.app.state.openenv.config.token == "s3cret"  # type: ignore[attr-defined]
    assert check_env(module).steps == 3


# tools: listed, callable with simple arguments, refusing bad ones.


def test_tools() -> None:
    from envs.echo_env.server.echo_environment import EchoEnvironment
    from openenv.server import tool

    class Unencodable(EchoEnvironment):
        @tool
        def angle(self) -> str:
            """Return what no message can carry."""
            return 1j  # type: ignore[return-value]

    (line,) = failures(Unencodable)
    assert line.startswith("tools: angle: the app closed the session")
    assert "cannot encode a complex" in line
    check_env(EchoEnvironment)  # echo_message keeps the rule
