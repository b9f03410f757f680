"""Run an env app under uvicorn, on a TCP port or a unix socket.

Once it accepts sessions the server announces its address (with the real port when asked for
port 0): on stdout for a person, or as one line on ``ready_fd`` for the provider that started it.
Across a container boundary it writes that line to ``ready_file`` instead.
With ``watch_parent`` it exits when its stdin closes, i.e. when the process that started it is
gone, so no server outlives the client that started it.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import os
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn

from openenv.server.config import ServerConfig
from openenv.server.ws_protocol import EnvWebSocketProtocol

__all__ = ["exit_when_stdin_closes", "is_loopback", "load_app", "serve", "uvicorn_config"]
_HARD_EXIT_AFTER_S = 3.0


def load_app(target: str) -> Any:
    """Find the ASGI app for ``target``.

    ``target`` is ``module:attribute``, an env package (``envs.echo_env``, whose app is
    ``envs.echo_env.server.app:app``) or that package's path (``envs/echo_env``).
    """
    if ":" in target:
        module_name, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)
    module_name = target.rstrip("/").replace(os.sep, ".").removesuffix(".py")
    if Path(target).is_dir():
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(f"{module_name}.server.app").app


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uvicorn_config(
    app: Any, host: str, port: int, uds: str | None, **overrides: Any
) -> uvicorn.Config:
    """How every env server runs under uvicorn; ``overrides`` replace any option."""
    limits = ServerConfig.from_env()
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "uds": uds,
        "loop": loop,
        # uvicorn's websockets-sansio implementation (the maintained one; it reaps half-open
        # peers), adapted to sessions: see ws_protocol.
        "ws": EnvWebSocketProtocol,
        "ws_max_size": limits.max_frame_bytes,
        "ws_ping_interval": limits.ping_interval,
        "ws_ping_timeout": limits.ping_timeout,
        "ws_per_message_deflate": False,  # compression costs more CPU than small frames save
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 2,
    }
    return uvicorn.Config(app, **{**options, **overrides})


def serve(
    target: str | Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    ready_fd: int | None = None,
    ready_file: str | None = None,
    watch_parent: bool = False,
) -> None:
    """Serve ``target`` (an app or a :func:`load_app` string) until interrupted."""
    app = load_app(target) if isinstance(target, str) else target
    server = uvicorn.Server(uvicorn_config(app, host, port, uds))
    if watch_parent:
        exit_when_stdin_closes(server)
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(_serve_and_announce(server, uds, ready_fd, ready_file))


async def _serve_and_announce(
    server: uvicorn.Server, uds: str | None, ready_fd: int | None, ready_file: str | None
) -> None:
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # re-raise why start-up failed
            raise SystemExit("server stopped during start-up")
        await asyncio.sleep(0.005)
    url = _ws_url(server, uds)
    if ready_fd is not None:
        os.write(ready_fd, f"{url}\n".encode())
        os.close(ready_fd)
    elif ready_file is not None:
        # Written whole, then renamed: a watcher never reads half a line.
        Path(f"{ready_file}.tmp").write_text(f"{url}\n")
        os.replace(f"{ready_file}.tmp", ready_file)
    else:
        print(f"openenv: serving on {url}", flush=True)
    await task


def _ws_url(server: uvicorn.Server, uds: str | None) -> str:
    if uds is not None:
        return f"unix://{uds}"
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port}/ws"


def exit_when_stdin_closes(server: uvicorn.Server | None = None) -> None:
    """Exit once stdin closes, i.e. once the parent process is gone: ask ``server`` to shut
    down, and end the process for good a moment later."""

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        if server is not None:
            server.should_exit = True
        # Shutdown waits for open sessions; a parent that is gone will not close them.
        threading.Timer(_HARD_EXIT_AFTER_S if server else 0.0, os._exit, (0,)).start()

    threading.Thread(target=watch, name="openenv-parent-watch", daemon=True).start()
