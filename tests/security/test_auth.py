"""The token guards every route the app serves but ``/health``: the routes are enumerated from
the app itself, so a route added later is tested too."""

from __future__ import annotations

import httpx
import pytest
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import ServerConfig, create_app
from tests.conftest import running_server

TOKEN = "route-test-token"
OPEN = {"/health"}


def _routes(app: object) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route, and ("WS", path) of every WebSocket route."""
    found = []
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, WebSocketRoute):
            found.append(("WS", route.path))
        elif isinstance(route, Route):
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    found.append((method, route.path))
        elif isinstance(route, Mount):
            found.append(("GET", route.path + "/"))
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}")
    return found


async def test_every_route_but_health_wants_the_token() -> None:
    app = create_app(EchoEnvironment, config=ServerConfig(token=TOKEN))
    routes = _routes(app)
    assert ("GET", "/info") in routes and ("GET", "/openapi.json") in routes
    async with running_server(app) as address:
        base = address.removeprefix("ws://").removesuffix("/ws")
        async with httpx.AsyncClient(base_url=f"http://{base}", timeout=30) as http:
            for method, path in routes:
                if method == "WS":
                    with pytest.raises(InvalidStatus) as refused:
                        await connect(f"ws://{base}{path}", proxy=None)
                    assert refused.value.response.status_code == 403
                    continue
                without = await http.request(method, path)
                if path in OPEN:
                    assert without.status_code == 200, (method, path)
                    continue
                assert without.status_code == 401, (method, path, without.status_code)
                wrong = await http.request(method, path, headers={"Authorization": "Bearer no"})
                assert wrong.status_code == 401, (method, path)
                right = await http.request(
                    method, path, headers={"Authorization": f"Bearer {TOKEN}"}
                )
                assert right.status_code != 401, (method, path)
            # A path no route serves says nothing either without the token.
            assert (await http.get("/no-such-route")).status_code == 401
