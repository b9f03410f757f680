"""SkyRL: openenv envs as skyrl-gym text envs (``BaseTextEnv``).

::

    register("openenv-echo", AsyncEchoEnv, LocalProcessProvider("envs.echo_env"), max_sessions=64)
    env = skyrl_gym.make("openenv-echo", env_config={}, extras={"seed": 3})
    prompt, _ = env.init([{"role": "user", "content": "Say hi with the echo tool."}])
    out = env.step('<tool_call>{"name": "echo", "arguments": {"message": "hi"}}</tool_call>')
    env.close()

SkyRL's generator makes one env per trajectory (``skyrl_gym.make(id, env_config=...,
extras=row)``), calls ``init(prompt)``, then ``step(model_text)`` until ``done``, then
``close()``. Here:

- ``init`` leases a session from the pool :func:`register` made (shared by every env of that
  id; ``max_sessions`` sessions, ``sessions_per_server`` per server) and resets it with the
  row's ``seed``, ``episode_id`` and ``reset_fields``; the first observation is appended to
  the prompt's last user message;
- ``step`` runs every ``<tool_call>`` in the text (one tool per action kind, see
  :mod:`openenv.integrations.tools`) and answers with their observations as one message; its
  reward is the sum of the env's rewards for those calls. The episode is done when the env
  says so, when the text calls no tool, or after ``max_turns`` steps. A call that fails (bad
  JSON, unknown tool, the env refused, the session broke) is answered with the error, and the
  episode goes on;
- ``close`` gives the session back; one that broke is reopened (on a replacement server if
  its server died) before another episode gets it.

:func:`register` returns the :class:`~openenv.integrations.sessions.Sessions`; close it when
training ends (an exit hook does it otherwise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from openenv.client.async_client import AsyncEnvClient
from openenv.integrations.sessions import EpisodeSession, Sessions, Where
from openenv.integrations.tools import (
    ToolCallError,
    ToolSpec,
    observation_text,
    parse_tool_calls,
)
from openenv.types import Observation

__all__ = ["register", "text_env_class"]

_RESET_FIELDS = ("seed", "episode_id")


def register(
    env_id: str,
    client_cls: type[AsyncEnvClient[Any, Any, Any]],
    where: Where,
    *,
    max_sessions: int,
    sessions_per_server: int = 16,
    reset_fields: Sequence[str] = (),
    tools: str = "auto",
    tool_name: str | None = None,
    render: Callable[[Observation], str] = observation_text,
    max_turns: int = 8,
    observation_role: str = "user",
    timeout: float | None = 60.0,
) -> Sessions[Any]:
    """Register ``env_id`` with skyrl-gym: ``skyrl_gym.make(env_id, ...)`` then makes an
    openenv text env over a session of ``client_cls`` from ``where`` (a provider, or the
    endpoint(s) of running servers). Returns the sessions behind it (``close()`` them when
    training ends). ``max_sessions`` bounds the episodes at once; more wait for a session.
    ``tools`` and ``tool_name`` are :class:`~openenv.integrations.trl.EnvironmentFactory`'s."""
    import skyrl_gym

    sessions: Sessions[Any] = Sessions(
        client_cls,
        where,
        max_sessions=max_sessions,
        sessions_per_server=sessions_per_server,
        timeout=timeout,
        wait=True,
    )
    env_class = text_env_class()
    specs = sessions.tools(tools, tool_name)

    def make(env_config: Any = None, extras: dict[str, Any] | None = None) -> Any:
        return env_class(
            env_config,
            extras,
            sessions=sessions,
            tools=specs,
            reset_fields=tuple(reset_fields),
            render=render,
            max_turns=max_turns,
            observation_role=observation_role,
        )

    skyrl_gym.register(id=env_id, entry_point=make)
    return sessions


@functools.cache
def text_env_class() -> type[Any]:
    """The ``BaseTextEnv`` subclass (made on first use: skyrl-gym is imported only here)."""
    from skyrl_gym.envs.base_text_env import BaseTextEnv

    class OpenEnvTextEnv(BaseTextEnv):  # type: ignore[misc]
        """One trajectory over an openenv env session (see :mod:`openenv.integrations.skyrl`)."""

        def __init__(
            self,
            env_config: Any = None,
            extras: dict[str, Any] | None = None,
            *,
            sessions: Sessions[Any],
            tools: list[ToolSpec],
            reset_fields: tuple[str, ...] = (),
            render: Callable[[Observation], str] = observation_text,
            max_turns: int = 8,
            observation_role: str = "user",
        ) -> None:
            super().__init__()
            extras = dict(extras or {})
            self.max_turns = int(extras.get("max_turns", max_turns))
            self._options = {k: extras[k] for k in (*_RESET_FIELDS, *reset_fields) if k in extras}
            self._episode = EpisodeSession(sessions)
            self._tools = {spec.name: spec for spec in tools}
            self._render = render
            self._role = observation_role
            self._failures = 0

        def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            first = self._render(self._episode.start(self._options))
            prompt = [dict(message) for message in prompt]
            if prompt and prompt[-1].get("role") == "user" and first:
                prompt[-1]["content"] = f"{prompt[-1]['content']}\n\n{first}"
            elif first:
                prompt.append({"role": "user", "content": first})
            return prompt, {}

        def step(self, action: str) -> dict[str, Any]:
            self.turns += 1
            calls = parse_tool_calls(action)
            rewards_before = len(self._episode.rewards)
            answers = []
            for call in calls:
                try:
                    if isinstance(call, ToolCallError):
                        raise call
                    name, arguments = call
                    spec = self._tools.get(name)
                    if spec is None:
                        raise ToolCallError(f"no tool {name!r} (tools: {sorted(self._tools)})")
                    answers.append(self._render(self._episode.call(spec, arguments)))
                except ToolCallError as exc:
                    self._failures += 1
                    answers.append(f"error: {exc}")
            reward = sum(self._episode.rewards[rewards_before:])
            done = not calls or self._episode.done or self.turns >= self.max_turns
            observations = (
                [{"role": self._role, "content": "\n\n".join(answers)}] if answers else []
            )
            return {
                "observations": observations,
                "reward": float(reward),
                "done": done,
                "metadata": {"tool_calls": len(calls)},
            }

        def close(self) -> None:
            self._episode.end()

        def get_metrics(self) -> dict[str, Any]:
            return {
                "env_return": float(sum(self._episode.rewards)),
                "tool_failures": self._failures,
                "turns": self.turns,
            }

    return OpenEnvTextEnv
