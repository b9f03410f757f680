"""Plain HTTP routes in upstream OpenEnv's shapes: for curl, other languages and old clients.

``POST /reset``, ``POST /step``, ``GET /state``, ``GET /schema``, ``GET /metadata`` (and the
app's ``GET /health``). As upstream's are, they are stateless: every request gets a fresh env,
closed again before the response, so ``/step`` and ``/state`` see an env that was never reset.
An episode needs a session: the WebSocket is the way to play one (and the fast path).

Bad input is answered 422 ``{"detail": [{"type", "loc", "msg"}]}`` with ``loc`` naming the
field (``["body", "action", "message"]``); an env that raises is answered 500
``{"detail": "<exception>"}``. With a server token, every route here wants
``Authorization: Bearer <token>`` and answers 401 without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from openenv.server.config import ServerConfig
from openenv.server.env_call import EnvCaller, EnvCallError, StepTimeout, accepted_kwargs
from openenv.server.environment import Environment
from openenv.server.upstream import InvalidArguments, reset_arguments
from openenv.tools import inline_schema
from openenv.upstream import observation_data, state_data, validation_errors

__all__ = ["http_routes"]

ActT = TypeVar("ActT")

_json = msgspec.json.Encoder()


class _StepBody(msgspec.Struct, Generic[ActT]):
    """Upstream's ``StepRequest``; unknown fields are allowed (and ignored), as there."""

    action: ActT
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    request_id: Annotated[str, msgspec.Meta(max_length=255)] | None = None


def _json_response(content: Any, status: int = 200, **headers: str) -> Response:
    return Response(_json.encode(content), status, headers, media_type="application/json")


def _unprocessable(errors: list[dict[str, Any]]) -> Response:
    return _json_response({"detail": errors}, 422)


class _Routes:
    def __init__(
        self,
        env_cls: type[Environment[Any, Any, Any]],
        env_kwargs: dict[str, Any],
        config: ServerConfig,
        authorized: Callable[[Scope], bool],
        schemas: dict[str, Any],
    ) -> None:
        self.env_cls = env_cls
        self.env_kwargs = env_kwargs
        self.config = config
        self.authorized = authorized
        self.schemas = schemas
        self.step_body: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            _StepBody[env_cls.action_type]  # type: ignore[name-defined]
        )
        self.reset_body: msgspec.json.Decoder[Any] = msgspec.json.Decoder(dict[str, Any])

    def _refusal(self, request: Request) -> Response | None:
        """401 for a request without the server's token, else None."""
        if self.authorized(request.scope):
            return None
        detail = {"detail": "missing or wrong bearer token"}
        return _json_response(detail, 401, **{"WWW-Authenticate": "Bearer"})

    async def _with_env(self, use: Callable[[EnvCaller], Any]) -> Response:
        """Run ``use`` on a fresh env, closed afterwards."""
        try:
            caller = EnvCaller(self.env_cls(**self.env_kwargs), self.config.step_timeout)
        except Exception as exc:
            return _json_response({"detail": f"the env could not be created: {exc!r}"}, 500)
        try:
            result: Response = await use(caller)
            return result
        except InvalidArguments as exc:
            return _unprocessable(exc.errors)
        except (EnvCallError, StepTimeout) as exc:
            return _json_response({"detail": exc.message}, 500)
        finally:
            await caller.release()

    async def reset(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.body()
        try:
            data = self.reset_body.decode(body) if body.strip() else {}
        except (ValueError, RecursionError) as exc:
            return _unprocessable(validation_errors(exc, ("body",)))

        async def use(caller: EnvCaller) -> Response:
            arguments = reset_arguments(caller.env, data, ("body",))
            observation = await caller.call(caller.env.reset, **arguments)
            return _json_response(observation_data(observation, http=True))

        return await self._with_env(use)

    async def step(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = self.step_body.decode(await request.body())
        except (ValueError, RecursionError) as exc:
            return _unprocessable(validation_errors(exc, ("body",)))

        async def use(caller: EnvCaller) -> Response:
            extra = {"timeout_s": body.timeout_s} if body.timeout_s is not None else {}
            arguments = accepted_kwargs(caller.env.step, extra)
            observation = await caller.call(caller.env.step, body.action, **arguments)
            return _json_response(observation_data(observation, http=True))

        return await self._with_env(use)

    async def state(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal

        async def use(caller: EnvCaller) -> Response:
            return _json_response(state_data(await caller.state()))

        return await self._with_env(use)

    async def schema(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        schemas = self.schemas
        return _json_response(
            {
                "action": inline_schema(schemas["action_schema"]),
                "observation": inline_schema(schemas["observation_schema"]),
                "state": inline_schema(schemas["state_schema"]),
            }
        )

    async def openapi(self, request: Request) -> Response:
        """A minimal OpenAPI document of these routes: upstream's tools (``openenv validate``)
        read the API version and the route set from it."""
        ok = {"200": {"description": "OK"}}
        bad = {"422": {"description": "bad input; detail[].loc names the field"}}
        action = inline_schema(self.schemas["action_schema"])
        step_body = {
            "type": "object",
            "properties": {
                "action": action,
                "timeout_s": {"type": "number", "exclusiveMinimum": 0},
                "request_id": {"type": "string", "maxLength": 255},
            },
            "required": ["action"],
        }

        def body(schema: dict[str, Any]) -> dict[str, Any]:
            return {"content": {"application/json": {"schema": schema}}}

        get = {"get": {"responses": ok}}
        return _json_response(
            {
                "openapi": "3.1.0",
                "info": {"title": f"openenv: {self.env_cls.env_name()}", "version": "1.0.0"},
                "paths": {
                    "/reset": {
                        "post": {
                            "requestBody": body({"type": "object"}),
                            "responses": {**ok, **bad},
                        }
                    },
                    "/step": {"post": {"requestBody": body(step_body), "responses": {**ok, **bad}}},
                    "/state": get,
                    "/schema": get,
                    "/metadata": get,
                    "/health": get,
                    "/info": get,
                    "/mcp": {"post": {"responses": ok}},
                },
            }
        )

    async def metadata(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        env_cls = self.env_cls
        doc = (env_cls.__doc__ or "").strip()
        return _json_response(
            {
                "name": env_cls.env_name(),
                "description": doc.splitlines()[0] if doc else f"{env_cls.env_name()} environment",
                "readme_content": None,
                "version": None,
                "author": None,
                "documentation_url": None,
            }
        )


def http_routes(
    env_cls: type[Environment[Any, Any, Any]],
    env_kwargs: dict[str, Any],
    config: ServerConfig,
    authorized: Callable[[Scope], bool],
    schemas: dict[str, Any],
) -> list[Route]:
    """The upstream-shaped HTTP routes of an app serving ``env_cls``.

    Args:
        env_cls: the Environment subclass; one instance per request.
        env_kwargs: keyword arguments for every ``env_cls(...)``.
        config: the server's limits (the step time limit applies here too).
        authorized: whether a request's scope carries the server's token.
        schemas: the app's ``action_schema`` / ``observation_schema`` / ``state_schema``.
    """
    routes = _Routes(env_cls, env_kwargs, config, authorized, schemas)
    return [
        Route("/reset", routes.reset, methods=["POST"]),
        Route("/step", routes.step, methods=["POST"]),
        Route("/state", routes.state, methods=["GET"]),
        Route("/schema", routes.schema, methods=["GET"]),
        Route("/metadata", routes.metadata, methods=["GET"]),
        Route("/openapi.json", routes.openapi, methods=["GET"]),
    ]
