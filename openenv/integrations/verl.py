"""verl: openenv envs as verl tools (``verl.tools.base_tool.BaseTool``).

verl's agent loop (``ToolAgentLoop``) loads tools from a YAML file of ``class_name`` and
``config`` entries (``verl.tools.tool_registry.initialize_tools_from_config``) and, for each
call the model makes, runs ``create`` -> ``execute`` -> ``release`` on the named tool
(``calc_reward`` where a reward is wanted). Here each env action kind is one tool::

    tools:
      - class_name: openenv.integrations.verl.OpenEnvTool
        config:
          type: native
          client: envs.coding_env.client:AsyncCodingEnv   # the env's async client
          app: envs.coding_env        # servers as local processes; or endpoints: [...], image: ...
          tool: code                  # the action kind (omit for an env with one)
          max_sessions: 64
          sessions_per_server: 8

- ``create(create_kwargs=...)`` leases a session from a pool shared by every tool of the same
  env and ``app``/``endpoints``/``image``, and resets it with ``create_kwargs`` (``seed``,
  ``episode_id``, env options such as the terminal env's ``task``); the first observation is
  the creation response;
- ``execute`` takes the action and answers with the observation as text, the step's reward,
  and ``{"done": ...}``; a call that fails is answered with the error (reward 0.0);
- ``calc_reward`` is the sum of the env's rewards since ``create``; ``release`` gives the
  session back (reopened first if it broke, on a replacement server if its server died).

verl's ToolAgentLoop makes an instance per call, so each call is an episode of its own: right
for tools whose one step is the whole job (run this code, run this query); an env whose state
must carry from call to call needs an agent loop that keeps one instance for the trajectory.

The sync sessions run on worker threads (``asyncio.to_thread``), so verl's event loop never
blocks on an env. :func:`close_all` closes every pool (an exit hook does it otherwise).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
import types
import typing
from typing import Any
from uuid import uuid4

from openenv.client.async_client import AsyncEnvClient
from openenv.integrations.sessions import EpisodeSession, Sessions, Where
from openenv.integrations.tools import ToolCallError, ToolSpec, observation_text, tools_of
from openenv.providers.base import Provider

try:  # the base class verl loads tools by; the module also imports without verl
    from verl.tools.base_tool import BaseTool
    from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse
except ImportError:  # pragma: no cover - exercised where verl is absent
    BaseTool = object
    OpenAIFunctionToolSchema = ToolResponse = None

__all__ = ["OpenEnvTool", "close_all", "openai_schema"]

_RESET_FIELDS = ("seed", "episode_id")
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
_POOLS: dict[tuple[Any, ...], Sessions[Any]] = {}
_POOLS_LOCK = threading.Lock()


def openai_schema(spec: ToolSpec) -> dict[str, Any]:
    """The OpenAI function schema of one tool, as verl's ``OpenAIFunctionToolSchema`` takes it
    (a property has a single ``type`` and a ``description``)."""
    properties = {
        name: {"type": _json_type(annotation), "description": description}
        for name, annotation, _, description in spec.parameters
    }
    required = [
        name for name, _, default, _ in spec.parameters if default is inspect.Parameter.empty
    ]
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def _json_type(annotation: Any) -> str:
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(options) == 1:
        annotation = options[0]
    if annotation in _JSON_TYPES:
        return _JSON_TYPES[annotation]
    return "array" if annotation is list else "object"


def _client_class(path: str) -> type[AsyncEnvClient[Any, Any, Any]]:
    module, _, name = path.partition(":")
    client: type[AsyncEnvClient[Any, Any, Any]] = getattr(importlib.import_module(module), name)
    return client


def _where(config: dict[str, Any]) -> tuple[Where, tuple[Any, ...]]:
    """The servers a tool config names, and a key for sharing their pool."""
    if "endpoints" in config:
        endpoints = list(config["endpoints"])
        return endpoints, ("endpoints", *endpoints)
    if "image" in config:
        from openenv.providers.docker import LocalDockerProvider

        provider: Provider = LocalDockerProvider(config["image"])
        return provider, ("image", config["image"])
    if "app" in config:
        from openenv.providers.process import LocalProcessProvider

        return LocalProcessProvider(config["app"]), ("app", config["app"])
    raise ValueError("an openenv tool's config names app, image or endpoints: where its env runs")


def _sessions(config: dict[str, Any]) -> Sessions[Any]:
    client = config["client"]
    with _POOLS_LOCK:
        where, key = _where(config)
        key = (client, *key)
        sessions = _POOLS.get(key)
        if sessions is None or sessions.closed:
            sessions = Sessions(
                _client_class(client),
                where,
                max_sessions=int(config.get("max_sessions", 64)),
                sessions_per_server=int(config.get("sessions_per_server", 16)),
                timeout=config.get("timeout", 60.0),
                wait=True,
            )
            _POOLS[key] = sessions
        return sessions


def close_all() -> None:
    """Close every env pool the tools opened (every session, every server)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for sessions in pools:
        sessions.close()


def _spec_of(config: dict[str, Any]) -> ToolSpec:
    specs = tools_of(_client_class(config["client"]).action_type)
    wanted = config.get("tool")
    if wanted is None and len(specs) == 1:
        return specs[0]
    for spec in specs:
        if spec.name == wanted:
            return spec
    raise ValueError(f"tool {wanted!r} is not one of this env's: {[s.name for s in specs]}")


class OpenEnvTool(BaseTool):  # type: ignore[misc]
    """One action kind of an openenv env as a verl tool (see :mod:`openenv.integrations.verl`).

    Args:
        config: the tool's ``config`` from verl's tool YAML: ``client`` (``module:Class`` of
            the env's async client), one of ``app`` / ``image`` / ``endpoints``, and
            optionally ``tool``, ``max_sessions``, ``sessions_per_server``, ``timeout``,
            ``reset_fields`` (create kwargs passed to the env's reset besides ``seed`` and
            ``episode_id``).
        tool_schema: verl's schema for the tool; None: made from the env's action kind.
    """

    def __init__(self, config: dict[str, Any], tool_schema: Any = None) -> None:
        self._spec = _spec_of(config)
        self._fields = (*_RESET_FIELDS, *config.get("reset_fields", ()))
        self._sessions = _sessions(config)
        self._episodes: dict[str, EpisodeSession] = {}
        if tool_schema is None and OpenAIFunctionToolSchema is not None:
            tool_schema = OpenAIFunctionToolSchema.model_validate(openai_schema(self._spec))
        super().__init__(config, tool_schema)

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, Any]:
        instance_id = instance_id or str(uuid4())
        create_kwargs = dict(kwargs.get("create_kwargs") or {})
        options = {k: create_kwargs[k] for k in self._fields if k in create_kwargs}
        episode = EpisodeSession(self._sessions)
        self._episodes[instance_id] = episode
        first = await asyncio.to_thread(episode.start, options)
        return instance_id, ToolResponse(text=observation_text(first))

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[Any, float, dict[str, Any]]:
        episode = self._episodes.get(instance_id)
        if episode is None:
            return ToolResponse(text=f"error: no {self.name} instance {instance_id}"), 0.0, {}
        before = len(episode.rewards)
        try:
            observation = await asyncio.to_thread(episode.call, self._spec, parameters)
        except ToolCallError as exc:
            return ToolResponse(text=f"error: {exc}"), 0.0, {"failed": True}
        reward = float(sum(episode.rewards[before:]))
        return ToolResponse(text=observation_text(observation)), reward, {"done": episode.done}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        episode = self._episodes.get(instance_id)
        return float(sum(episode.rewards)) if episode is not None else 0.0

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        episode = self._episodes.pop(instance_id, None)
        if episode is not None:
            await asyncio.to_thread(episode.end)
