"""Our client in upstream OpenEnv's dialect, for servers that do not speak ours.

:class:`UpstreamClientCodec` stands in for the client's :class:`~openenv.protocol.Codec`:
it turns our requests into upstream's JSON envelopes and upstream's replies back into our reply
Structs (``Result``, ``StateReply``, ``Error``), so ``AsyncEnvClient`` runs the same code and
returns the same typed results in either dialect.

What the upstream dialect cannot give:

- **no ids**: a reply is matched to the one request in flight. A call that times out or is
  cancelled leaves a reply on its way that nothing could tell from the next one, so the client
  drops that connection (the session is lost; a pool replaces the env).
- **no pipelining**: one request at a time (our client is lockstep anyway).
- **no greeting**: no env name, session id or schemas before the first call; ``client.hello``
  is a placeholder with ``protocol=0``.
- JSON text frames instead of msgpack, and ``close`` gets no ``goodbye``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from openenv.protocol import (
    CallTool,
    Close,
    Error,
    ErrorCode,
    FrameError,
    GetState,
    Hello,
    ListTools,
    Reset,
    Result,
    StateReply,
    Step,
    ToolList,
    ToolReply,
    json_default,
)
from openenv.tools import Tool, ToolError, ToolResult
from openenv.upstream import (
    UpCallTool,
    UpClose,
    UpError,
    UpMcp,
    UpMcpReply,
    UpObservation,
    UpReset,
    UpState,
    UpStateReply,
    UpStep,
    UpstreamCode,
    UpToolStep,
    reply_type,
)

__all__ = ["UPSTREAM_HELLO", "UpstreamClientCodec"]

#: What ``client.hello`` holds in upstream's dialect, which has no greeting.
UPSTREAM_HELLO = Hello(protocol=0, env="", session_id="")

_CODES: dict[str, ErrorCode] = {
    UpstreamCode.INVALID_JSON.value: ErrorCode.INVALID_MESSAGE,
    UpstreamCode.UNKNOWN_TYPE.value: ErrorCode.INVALID_MESSAGE,
    UpstreamCode.CAPACITY_REACHED.value: ErrorCode.CAPACITY,
}

_DECODERS: dict[tuple[type[Any], type[Any]], msgspec.json.Decoder[Any]] = {}


class _UpToolFields(msgspec.Struct):
    """A tool step's observation, as upstream 0.10's MCP envs answer it."""

    tool_name: str = ""
    result: Any = None
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}


_TOOL_DECODER = msgspec.json.Decoder(UpObservation[_UpToolFields] | UpMcpReply | UpError)


class UpstreamClientCodec:
    """Translates one client's requests and replies; holds the id of the request in flight.

    Args:
        observation_type: the env's observation Struct.
        state_type: the env's state Struct.
    """

    #: Replies carry no ids: a late reply cannot be told from the next one.
    lockstep = True

    def __init__(self, observation_type: type[Any], state_type: type[Any]) -> None:
        key = (observation_type, state_type)
        if key not in _DECODERS:
            _DECODERS[key] = msgspec.json.Decoder(reply_type(observation_type, state_type))
        self._decoder = _DECODERS[key]
        self._encoder = msgspec.json.Encoder(enc_hook=json_default)  # arrays as lists
        self._pending = 0
        self._stepping = False
        self._tooling = False  # a tool call or listing is in flight

    def encode(self, request: msgspec.Struct) -> bytes:
        """Upstream's envelope for one of our requests, as JSON (sent in a text frame)."""
        kind = request.__class__
        self._tooling = kind is CallTool or kind is ListTools
        if kind is Step:
            assert isinstance(request, Step)
            self._pending, self._stepping = request.id, True
            return self._encoder.encode(UpStep(data=request.action))
        if kind is CallTool:  # a step with upstream's CallToolAction: it keeps reward and done
            assert isinstance(request, CallTool)
            self._pending, self._stepping = request.id, True
            action = UpCallTool(tool_name=request.name, arguments=request.arguments)
            return self._encoder.encode(UpToolStep(data=action))
        self._stepping = False
        if kind is ListTools:
            assert isinstance(request, ListTools)
            self._pending = request.id
            call = {"jsonrpc": "2.0", "id": request.id, "method": "tools/list", "params": {}}
            return self._encoder.encode(UpMcp(data=call))
        if kind is Reset:
            assert isinstance(request, Reset)
            self._pending = request.id
            data: dict[str, Any] = dict(request.options)
            if request.seed is not None:
                data["seed"] = request.seed
            if request.episode_id is not None:
                data["episode_id"] = request.episode_id
            return self._encoder.encode(UpReset(data=data))
        if kind is GetState:
            assert isinstance(request, GetState)
            self._pending = request.id
            return self._encoder.encode(UpState())
        assert isinstance(request, Close)
        return self._encoder.encode(UpClose())

    def decode(self, frame: bytes | str) -> Any:
        """Our reply Struct for upstream's reply, addressed to the request in flight.

        Raises:
            FrameError: the frame is not one of upstream's replies.
        """
        if not isinstance(frame, str):
            raise FrameError(
                ErrorCode.INVALID_MESSAGE,
                "a binary frame from a server that did not accept the openenv.v1 subprotocol: "
                "an openenv server older than it? (upstream's dialect is JSON text only)",
            )
        try:
            reply = (_TOOL_DECODER if self._tooling else self._decoder).decode(frame)
        except (ValueError, RecursionError) as exc:
            raise FrameError(ErrorCode.INVALID_MESSAGE, str(exc)[:300]) from exc
        if reply.__class__ is UpObservation:
            data = reply.data
            observation = data.observation
            # Upstream lifts reward and done out of the observation; ours carries them inside.
            reward = data.reward
            reward = float(reward) if reward.__class__ is bool else reward
            if observation.__class__ is _UpToolFields:
                result = _tool_result(observation, reward, data.done)
                return ToolReply(id=self._pending, observation=result)
            if observation.__class__ is dict:  # a generic client's
                observation["reward"], observation["done"] = reward, data.done
                if data.metadata and not observation.get("metadata"):
                    observation["metadata"] = data.metadata
            else:
                observation.reward, observation.done = reward, data.done
                if data.metadata and not observation.metadata:
                    observation.metadata = data.metadata
            return Result(id=self._pending, observation=observation)
        if reply.__class__ is UpMcpReply:
            return self._tool_list(reply.data)
        if reply.__class__ is UpStateReply:
            return StateReply(id=self._pending, state=reply.data)
        assert isinstance(reply, UpError)
        error = reply.data
        return Error(code=self._code(error.code), message=error.describe(), id=self._pending)

    def _tool_list(self, response: dict[str, Any]) -> ToolList | Error:
        error = response.get("error")
        if error is not None or not isinstance(response.get("result"), dict):
            message = error.get("message", "") if isinstance(error, dict) else str(response)
            return Error(code=ErrorCode.ENV_ERROR, message=f"tools/list: {message}"[:2000])
        tools = [
            Tool(
                name=str(tool.get("name", "")),
                description=tool.get("description") or "",
                input_schema=tool.get("inputSchema") or tool.get("input_schema") or {},
                output_schema=tool.get("outputSchema"),
            )
            for tool in response["result"].get("tools", [])
            if isinstance(tool, dict)
        ]
        return ToolList(id=self._pending, tools=tools)

    def _code(self, code: str) -> str:
        if code == UpstreamCode.VALIDATION_ERROR:
            return ErrorCode.INVALID_ACTION if self._stepping else ErrorCode.INVALID_MESSAGE
        return _CODES.get(code, ErrorCode.ENV_ERROR)


def _tool_result(fields: _UpToolFields, reward: float | None, done: bool) -> ToolResult:
    """Upstream's tool observation as ours: FastMCP's result object (or plain JSON) becomes
    ``result``; a framework error or an error result becomes ``error``."""
    result = fields.result
    error = None
    if fields.error is not None:
        kind = str(fields.error.get("error_type", "error"))
        error = ToolError(type=kind, message=str(fields.error.get("message", "")))
        result = None
    elif isinstance(result, dict) and "content" in result:  # FastMCP's CallToolResult
        if result.get("is_error") or result.get("isError"):
            error = ToolError(type="tool_error", message=_text(result))
            result = None
        elif result.get("data") is not None:
            result = result["data"]
        else:
            structured = result.get("structured_content") or result.get("structuredContent")
            if isinstance(structured, dict) and set(structured) == {"result"}:
                result = structured["result"]
            else:
                result = structured if structured is not None else _text(result)
    return ToolResult(
        tool_name=fields.tool_name,
        result=result,
        error=error,
        reward=reward,
        done=done,
        metadata=fields.metadata,
    )


def _text(result: dict[str, Any]) -> str:
    """The text parts of an MCP result's content."""
    parts = result.get("content") or []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))
