"""The upstream OpenEnv dialect on our ``/ws``: for a client that asks for no subprotocol.

Same Environment classes as our own dialect; the differences are upstream's (openenv-core 0.3.0
``HTTPEnvServer.websocket_endpoint``), kept on purpose so its clients work unchanged:

- JSON text frames only, in lockstep; no greeting, no ids. A binary frame is a
  ``SESSION_ERROR`` and ends the session (1003).
- ``step`` and ``state`` before ``reset`` go to the env as they are (upstream does not refuse
  them); whatever the env raises then is an ``EXECUTION_ERROR``.
- ``reset`` keywords the env's ``reset`` does not name are dropped, as upstream drops them.
- ``close`` gets no reply: the server closes the connection (1000).
- Errors are ``{"type":"error","data":{"message","code"[,"errors"]}}`` with upstream's codes;
  the session stays open, except after a timeout (1011: the env's state is unknown).
"""

from __future__ import annotations

from collections.abc import Awaitable
from time import perf_counter as _clock
from typing import Any

import msgspec

from openenv.protocol import CloseCode, json_default
from openenv.server.config import ServerConfig
from openenv.server.dialect import Closing
from openenv.server.env_call import EnvCaller, EnvCallError, StepTimeout, accepted_kwargs
from openenv.server.environment import Environment
from openenv.server.mcp_shapes import (
    INVALID_REQUEST,
    RpcError,
    call_tool,
    handle_tool_rpc,
    rpc_error,
    rpc_result,
    upstream_tool_observation,
)
from openenv.server.metrics import ServerMetrics
from openenv.server.tools import ToolCallError, toolbox
from openenv.upstream import (
    UpCallTool,
    UpClose,
    UpMcp,
    UpReset,
    UpState,
    UpStep,
    UpstreamCode,
    UpToolStep,
    observation_data,
    request_type,
    state_data,
    validation_errors,
)

__all__ = ["Closing", "InvalidArguments", "UpstreamCodec", "UpstreamSession", "reset_arguments"]

_KNOWN_TYPES = frozenset({"reset", "step", "state", "close", "mcp"})


class _TypeOnly(msgspec.Struct):
    type: Any = None


class UpstreamCodec:
    """Decodes upstream requests for one env type and encodes its replies; built once per app."""

    def __init__(self, action_type: type[Any]) -> None:
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(request_type(action_type))
        self._type_only = msgspec.json.Decoder(_TypeOnly)
        self._tool_step = msgspec.json.Decoder(UpToolStep)
        self._encoder = msgspec.json.Encoder(enc_hook=json_default)  # arrays as lists

    def decode(self, frame: str) -> Any:
        """One request (raises msgspec's ``ValueError``s; :meth:`frame_error` answers them)."""
        return self._decoder.decode(frame)

    def tool_step(self, frame: str) -> UpToolStep | None:
        """The frame as a step whose action is a tool action, or None if it is not one."""
        if '"list_tools"' not in frame and '"call_tool"' not in frame:
            return None
        try:
            return self._tool_step.decode(frame)
        except (ValueError, RecursionError):
            return None

    def fields(self, observation: dict[str, Any], reward: Any = None, done: bool = False) -> str:
        """An observation reply made of plain fields (a tool result's, in upstream's shape)."""
        metadata = observation.get("metadata") or {}
        data = {"observation": observation, "reward": reward, "done": done}
        if metadata:
            data["metadata"] = metadata
        return self._encoder.encode({"type": "observation", "data": data}).decode()

    def mcp(self, response: dict[str, Any]) -> str:
        return self._encoder.encode({"type": "mcp", "data": response}).decode()

    def frame_error(self, frame: str, exc: Exception) -> str:
        """The error reply to an undecodable frame, with upstream's code for what went wrong."""
        if not isinstance(exc, msgspec.ValidationError):
            return self.error(UpstreamCode.INVALID_JSON, f"Invalid JSON: {exc}")
        try:
            kind = self._type_only.decode(frame).type
        except (ValueError, RecursionError):
            kind = None
        if isinstance(kind, str) and kind not in _KNOWN_TYPES:
            return self.error(UpstreamCode.UNKNOWN_TYPE, f"Unknown message type: {kind}")
        errors = validation_errors(exc)
        return self.error(UpstreamCode.VALIDATION_ERROR, "Invalid message", errors=errors)

    def observation(self, observation: Any) -> str:
        data = observation_data(observation)
        return self._encoder.encode({"type": "observation", "data": data}).decode()

    def state(self, state: Any) -> str:
        return self._encoder.encode({"type": "state", "data": state_data(state)}).decode()

    def error(self, code: UpstreamCode, message: str, **extra: Any) -> str:
        data = {"message": message, "code": code.value, **extra}
        return self._encoder.encode({"type": "error", "data": data}).decode()


class InvalidArguments(Exception):
    """A request whose arguments do not fit; answered ``VALIDATION_ERROR``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("Invalid message")
        self.errors = errors


def reset_arguments(
    env: Environment[Any, Any, Any], data: dict[str, Any], prefix: tuple[str, ...]
) -> dict[str, Any]:
    """The keywords for ``env.reset`` from upstream's reset ``data``: ``seed`` must be a
    non-negative int and ``episode_id`` a string (or absent), and no key may be ``self``;
    keywords ``reset`` does not name are dropped.

    Raises:
        InvalidArguments: with pydantic-style errors naming the field (under ``prefix``).
    """
    if "self" in data:
        msg = "'self' is not a reset option"
        raise InvalidArguments([{"type": "extra_forbidden", "loc": [*prefix, "self"], "msg": msg}])
    seed = data.get("seed")
    if seed is not None and (type(seed) is not int or seed < 0):
        msg = "Input should be a non-negative integer"
        raise InvalidArguments([{"type": "value_error", "loc": [*prefix, "seed"], "msg": msg}])
    episode_id = data.get("episode_id")
    if episode_id is not None and not isinstance(episode_id, str):
        msg = "Input should be a valid string"
        raise InvalidArguments(
            [{"type": "string_type", "loc": [*prefix, "episode_id"], "msg": msg}]
        )
    return accepted_kwargs(env.reset, data)


Outgoing = str | Closing


class UpstreamSession:
    """One connection in upstream's dialect: ``handle`` turns each frame into its reply.

    A :class:`~openenv.server.dialect.Dialect`: the app drives it as it does our own dialect,
    on the connection itself under our uvicorn protocol, else over ASGI.
    """

    def __init__(
        self,
        env: Environment[Any, Any, Any],
        codec: UpstreamCodec,
        config: ServerConfig,
        metrics: ServerMetrics | None = None,
        caller: EnvCaller | None = None,
    ) -> None:
        # A session attached to an HTTP-created one (/ws?session_id=) runs that session's
        # caller, and leaves its env open when the WebSocket ends.
        self._owned = caller is None
        self._caller = EnvCaller(env, config.step_timeout) if caller is None else caller
        self._tools = toolbox(type(env))
        self._codec = codec
        self._max_frame = config.max_frame_bytes
        self._metrics = metrics

    def greeting(self) -> None:
        """Upstream's dialect has none: the client speaks first."""
        return None

    def handle(self, frame: bytes | str) -> Outgoing | Awaitable[Outgoing]:
        """The reply to ``frame``: at once for bad frames and ``close``, else an awaitable."""
        codec, metrics = self._codec, self._metrics
        if metrics is not None:
            metrics.frames_in += 1
            metrics.bytes_in += len(frame)
        if not isinstance(frame, str):
            reason = "binary frames are not part of this protocol: send JSON text"
            error = self._sent(codec.error(UpstreamCode.SESSION_ERROR, reason), "invalid_message")
            return Closing(CloseCode.UNSUPPORTED_DATA, "binary frame", error)
        if len(frame) > self._max_frame:
            if metrics is not None:
                metrics.error("too_big")
            return Closing(CloseCode.TOO_BIG, "frame exceeds the server's size limit")
        # A tool action is looked for first: an action type whose fields all have defaults
        # would take {"type": "call_tool", ...} for itself.
        tool_step = codec.tool_step(frame) if self._tools else None
        if tool_step is not None:
            if metrics is not None:
                metrics.requests["tool", "upstream"] += 1
            return self._tool_step(tool_step)
        try:
            request = codec.decode(frame)
        except (ValueError, RecursionError) as exc:
            return self._sent(codec.frame_error(frame, exc), "invalid_message")
        if metrics is not None:
            metrics.requests[_KINDS[request.__class__], "upstream"] += 1
        if request.__class__ is UpClose:
            return Closing(CloseCode.NORMAL)
        return self._answer(request)

    async def _answer(self, request: Any) -> Outgoing:
        codec, caller = self._codec, self._caller
        env = caller.env
        began = _clock()
        try:
            kind = request.__class__
            if kind is UpStep:
                observation = await caller.call(env.step, request.data)
                left = _clock()
                reply = self._sent(codec.observation(observation))
                if self._metrics is not None:
                    self._metrics.stepped("upstream", _clock() - began, left - began)
                return reply
            if kind is UpReset:
                arguments = reset_arguments(env, request.data, ("data",))
                return self._sent(codec.observation(await caller.call(env.reset, **arguments)))
            if kind is UpMcp:
                return self._sent(codec.mcp(await self._rpc(request.data)))
            assert kind is UpState
            return self._sent(codec.state(await caller.state()))
        except InvalidArguments as exc:
            error = codec.error(UpstreamCode.VALIDATION_ERROR, "Invalid message", errors=exc.errors)
            return self._sent(error, "invalid_message")
        except EnvCallError as exc:
            reply = self._sent(codec.error(UpstreamCode.EXECUTION_ERROR, exc.message), "env_error")
            return reply
        except StepTimeout as exc:
            reply = self._sent(codec.error(UpstreamCode.EXECUTION_ERROR, exc.message), "timeout")
            return Closing(CloseCode.INTERNAL_ERROR, frame=reply)

    async def _rpc(self, call: Any) -> dict[str, Any]:
        """A JSON-RPC request (``tools/list``, ``tools/call``) on this session's env."""
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return rpc_error(None, INVALID_REQUEST, "Invalid Request: not a JSON-RPC request")
        params = call.get("params") or {}
        if not isinstance(params, dict):
            return rpc_error(call.get("id"), INVALID_REQUEST, "Invalid Request: params")
        try:
            result = await handle_tool_rpc(self._tools, self._caller, call["method"], params)
        except RpcError as exc:
            return rpc_error(call.get("id"), exc.code, exc.message)
        return rpc_result(call.get("id"), result)

    async def _tool_step(self, request: UpToolStep) -> Outgoing:
        """A ``list_tools`` or ``call_tool`` step, answered as upstream 0.10's MCP envs do."""
        codec, action = self._codec, request.data
        if not isinstance(action, UpCallTool):
            tools = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in self._tools.specs
            ]
            return self._sent(codec.fields({"tools": tools, "metadata": {}}))
        try:
            result, spec = await call_tool(
                self._tools, self._caller, action.tool_name, action.arguments
            )
        except ToolCallError as exc:
            errors = [{**e, "loc": ["data", *e["loc"]]} for e in exc.errors]
            error = codec.error(UpstreamCode.VALIDATION_ERROR, str(exc), errors=errors)
            return self._sent(error, "invalid_action")
        except EnvCallError as exc:
            return self._sent(codec.error(UpstreamCode.EXECUTION_ERROR, exc.message), "env_error")
        except StepTimeout as exc:
            reply = self._sent(codec.error(UpstreamCode.EXECUTION_ERROR, exc.message), "timeout")
            return Closing(CloseCode.INTERNAL_ERROR, frame=reply)
        fields = {**upstream_tool_observation(result, spec), "metadata": result.metadata}
        return self._sent(codec.fields(fields, result.reward, result.done))

    def _sent(self, frame: str, error: str | None = None) -> str:
        """Count ``frame`` going out (an error reply, with our code for it ``error``)."""
        metrics = self._metrics
        if metrics is not None:
            metrics.frames_out += 1
            metrics.bytes_out += len(frame)
            if error is not None:
                metrics.error(error)
        return frame

    async def release(self) -> None:
        """Close the env (unless an HTTP-created session owns it); called once, after the
        session ended."""
        if self._owned:
            await self._caller.release()


_KINDS = {UpReset: "reset", UpStep: "step", UpState: "state", UpClose: "close", UpMcp: "tool"}
