"""Rules checked through the env's app, over in-process sessions: ``not_reset``, ``round-trip``
(in msgpack and JSON frames), ``isolation``, ``determinism``, ``tools``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from openenv.protocol import (
    CallTool,
    Error,
    ErrorCode,
    GetState,
    ListTools,
    Reset,
    Result,
    StateReply,
    Step,
    ToolList,
    ToolReply,
)
from openenv.server.environment import Environment
from openenv.server.tools import toolbox
from openenv.testing.asgi import AppSession, SessionEnded
from openenv.testing.failures import Failure
from openenv.testing.samples import SampleError, example_action
from openenv.types import Action

__all__ = ["run_served"]


class _Broken(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


async def run_served(
    env_cls: type[Environment[Any, Any, Any]], app: Any, actions: Sequence[Action]
) -> list[Failure]:
    """Check the served rules; ``actions`` should not end an episode before their last."""
    failures = []
    for check in (_not_reset, _frames, _isolation, _determinism, _tools):
        try:
            await check(env_cls, app, actions)
        except _Broken as broken:
            failures.append(broken.failure)
    return failures


class _Session:
    """An :class:`AppSession` with typed calls that turn a wrong answer into a failure."""

    def __init__(self, env_cls: type[Environment[Any, Any, Any]], app: Any, rule: str) -> None:
        self.session = AppSession(app, env_cls.observation_type, env_cls.state_type)
        self.rule = rule
        self.text = False
        self._ids = 0

    async def __aenter__(self) -> _Session:
        try:
            await self.session.__aenter__()
        except SessionEnded as exc:
            raise _Broken(Failure(self.rule, "session", f"could not open: {exc}")) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.__aexit__(None, None, None)

    async def send(self, message: Any, what: str) -> Any:
        try:
            return await self.session.request(message, text=self.text)
        except SessionEnded as exc:
            raise _Broken(Failure(self.rule, what, str(exc))) from exc

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def reset(self, **kwargs: Any) -> Any:
        return self._expect(await self.send(Reset(id=self.next_id(), **kwargs), "reset"), "reset")

    async def step(self, action: Action) -> Any:
        reply = await self.send(Step(id=self.next_id(), action=action), "step")
        return self._expect(reply, "step")

    async def state(self) -> Any:
        reply = await self.send(GetState(id=self.next_id()), "state")
        if not isinstance(reply, StateReply):
            raise _Broken(Failure(self.rule, "state", f"answered {_show(reply)}"))
        return reply.state

    def _expect(self, reply: Any, what: str) -> Any:
        if not isinstance(reply, Result):
            raise _Broken(Failure(self.rule, what, f"answered {_show(reply)}"))
        return reply.observation


def _show(reply: Any) -> str:
    if isinstance(reply, Error):
        return f"{reply.code} error: {reply.message}"
    return type(reply).__name__


async def _not_reset(env_cls: Any, app: Any, actions: Sequence[Action]) -> None:
    """``not_reset``: a session refuses step and state before its first reset."""
    async with _Session(env_cls, app, "not_reset") as session:
        for text in (False, True):
            session.text = text
            frames = "JSON" if text else "msgpack"
            for request, what in (
                (Step(id=session.next_id(), action=actions[0]), "step"),
                (GetState(id=session.next_id()), "state"),
            ):
                reply = await session.send(request, what)
                if not (isinstance(reply, Error) and reply.code == ErrorCode.NOT_RESET):
                    detail = f"{what} before reset answered {_show(reply)}, not a not_reset error"
                    raise _Broken(Failure("not_reset", f"{what} ({frames} frames)", detail))


async def _frames(env_cls: Any, app: Any, actions: Sequence[Action]) -> None:
    """``round-trip``: reset, step and state work in both kinds of frame (msgpack binary, JSON
    text), each decoded into the env's own types."""
    for text in (False, True):
        async with _Session(env_cls, app, "round-trip") as session:
            session.text = text
            await session.reset(seed=0)
            await session.step(actions[0])
            await session.state()


async def _isolation(env_cls: Any, app: Any, actions: Sequence[Action]) -> None:
    """``isolation``: what one session does never shows in another's state or observations."""
    async with (
        _Session(env_cls, app, "isolation") as one,
        _Session(env_cls, app, "isolation") as two,
    ):
        await one.reset(seed=0, episode_id="openenv-check-a")
        await two.reset(seed=1, episode_id="openenv-check-b")
        steps = min(2, len(actions))
        for action in actions[:steps]:
            await one.step(action)
        await two.step(actions[0])
        for session, episode, count, label in ((one, "a", steps, 1), (two, "b", 1, 2)):
            state = await session.state()
            kind = type(state).__name__
            if state.episode_id != f"openenv-check-{episode}":
                detail = (
                    f"session {label} reads {state.episode_id!r}, not its own episode: sessions "
                    "share state (a class attribute or a module global?)"
                )
                raise _Broken(Failure("isolation", f"{kind}.episode_id", detail))
            if state.step_count != count:
                detail = (
                    f"session {label} reads {state.step_count} after its {count} step(s): "
                    "sessions share state (a class attribute or a module global?)"
                )
                raise _Broken(Failure("isolation", f"{kind}.step_count", detail))


async def _determinism(env_cls: Any, app: Any, actions: Sequence[Action]) -> None:
    """``determinism``: an env with ``deterministic = True`` gives two sessions reset with the
    same seed and sent the same actions the same observations."""
    if not getattr(env_cls, "deterministic", False):
        return
    runs: list[list[Any]] = []
    for _ in range(2):
        async with _Session(env_cls, app, "determinism") as session:
            seen = [await session.reset(seed=7)]
            for action in actions:
                seen.append(await session.step(action))
                if seen[-1].done:
                    break
            runs.append(seen)
    for index, (first, second) in enumerate(zip(*runs, strict=False)):
        if first != second:
            when = "reset" if index == 0 else f"step {index}"
            for item in msgspec.structs.fields(type(first)):
                a, b = getattr(first, item.name), getattr(second, item.name)
                if a != b:
                    detail = (
                        f"differs at {when} between two sessions reset with seed 7 ({a!r} vs "
                        f"{b!r}), but {env_cls.__name__}.deterministic is True"
                    )
                    raise _Broken(
                        Failure("determinism", f"{type(first).__name__}.{item.name}", detail)
                    )


async def _tools(env_cls: Any, app: Any, actions: Sequence[Action]) -> None:
    """``tools``: the env's tools are listed before any reset, in both kinds of frame; after a
    reset each answers a call with the simplest valid arguments with a tool result (its error
    counts as an answer), and a call whose arguments do not fit is refused ``invalid_action``
    before the tool runs, the session going on."""
    tools = toolbox(env_cls)
    declared = [spec.name for spec in tools.specs]
    for text in (False, True):
        frames = "JSON" if text else "msgpack"
        async with _Session(env_cls, app, "tools") as session:
            session.text = text
            listed = await session.send(ListTools(id=session.next_id()), "list_tools")
            if not isinstance(listed, ToolList) or [t.name for t in listed.tools] != declared:
                shown = [t.name for t in listed.tools] if isinstance(listed, ToolList) else None
                detail = f"answered {shown or _show(listed)}, not the declared tools {declared}"
                raise _Broken(Failure("tools", f"list_tools ({frames} frames)", detail))
            if not declared:
                return
            await session.reset(seed=0)
            for spec in tools.specs:
                subject = f"{spec.name} ({frames} frames)"
                try:
                    sample = example_action(tools.arguments_type(spec.name))
                except SampleError as exc:
                    detail = f"no example arguments can be made ({exc}); its call is not checked"
                    raise _Broken(Failure("tools", subject, detail)) from None
                arguments = msgspec.to_builtins(sample)
                call = CallTool(id=session.next_id(), name=spec.name, arguments=arguments)
                reply = await session.send(call, spec.name)
                if not isinstance(reply, ToolReply):
                    detail = f"a call with {arguments} answered {_show(reply)}"
                    raise _Broken(Failure("tools", subject, detail))
                bad = CallTool(
                    id=session.next_id(), name=spec.name, arguments={"__not_an_argument__": 1}
                )
                reply = await session.send(bad, spec.name)
                if not (isinstance(reply, Error) and reply.code == ErrorCode.INVALID_ACTION):
                    detail = f"a call with an unknown argument answered {_show(reply)}"
                    raise _Broken(Failure("tools", subject, detail))
