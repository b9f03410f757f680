"""Run an env app under uvicorn, on a TCP port or a unix socket.

Once it accepts sessions the server announces its address (with the real port when asked for
port 0): on stdout for a person, or as one line on ``ready_fd`` for the provider that started it.
Across a container boundary it writes that line to ``ready_file`` instead.
With ``watch_parent`` it exits when its stdin closes, i.e. when the process that started it is
gone, so no server outlives the client that started it.

The listening socket is bound here, before uvicorn starts, so that a busy port or a live unix
socket is one clear :class:`~openenv.exceptions.ServeError`. A unix socket file is removed when
the server exits; a stale one (nothing answers there) is replaced, a live one is refused.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn

from openenv.endpoint import is_loopback
from openenv.exceptions import ServeError
from openenv.registry import resolve
from openenv.server.config import ServerConfig, hide_token
from openenv.server.gate import Gate, raise_fd_limit
from openenv.server.ws_protocol import EnvWebSocketProtocol

__all__ = [
    "bind_socket",
    "exit_when_stdin_closes",
    "is_loopback",
    "load_app",
    "serve",
    "uvicorn_config",
]
_HARD_EXIT_AFTER_S = 3.0
_PROBE_TIMEOUT_S = 1.0


def load_app(target: str) -> Any:
    """Find the ASGI app for ``target``: anything :func:`openenv.registry.resolve` takes, e.g.
    an env package (``envs.echo_env``, whose app is ``envs.echo_env.server.app:app``), its path
    (``envs/echo_env``), a registered env name (``echo``) or ``module:attribute``.

    Raises:
        EnvNotFoundError: no such env, module or attribute.
    """
    return resolve(target).load_app()


def uvicorn_config(
    app: Any, host: str, port: int, uds: str | None, **overrides: Any
) -> uvicorn.Config:
    """How every env server runs under uvicorn; ``overrides`` replace any option.

    The limits are the app's own (``create_app``'s config), else read from ``OPENENV_*``.
    """
    limits = _config_of(app) or ServerConfig.from_env()
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
        # Both through uvicorn's public seams: limits before its HTTP parser (see gate), and
        # our own WebSocket protocol on websockets' Sans-I/O core (see ws_protocol).
        "http": Gate(limits).protocol,
        "ws": EnvWebSocketProtocol,
        "ws_max_size": limits.max_frame_bytes,
        "ws_ping_interval": limits.ping_interval,
        "ws_ping_timeout": limits.ping_timeout,
        "ws_per_message_deflate": False,  # compression costs more CPU than small frames save
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 2,
        "backlog": 4096,  # thousands of sessions may connect at once (a pool opening)
    }
    return uvicorn.Config(app, **{**options, **overrides})


def _config_of(app: Any) -> ServerConfig | None:
    server = getattr(getattr(app, "state", None), "openenv", None)
    config = getattr(server, "config", None)
    return config if isinstance(config, ServerConfig) else None


def serve(
    target: str | Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    ready_fd: int | None = None,
    ready_file: str | None = None,
    watch_parent: bool = False,
    log_level: str = "warning",
    log_format: str = "text",
    uds_mode: int | None = None,
    insecure_no_token: bool = False,
) -> None:
    """Serve ``target`` (an app or a :func:`load_app` string) until interrupted.

    ``log_format`` is ``"text"`` or ``"json"`` (one JSON object per line, with session and
    request ids as fields: :mod:`openenv.observability.logs`).

    Before any env code is imported, the token leaves the environment (:func:`hide_token`)
    and the process becomes non-dumpable: the env's code and the processes it starts, under
    the same user, can read neither ``/proc/<server>/environ`` nor the server's memory.

    Args:
        uds_mode: permission bits of the unix socket (default ``$OPENENV_UDS_MODE``, else
            0o600: the server's user only); 0o660 lets its group in.
        insecure_no_token: serve an env that runs code (``Environment.runs_code``) on a unix
            socket without a token: anyone who may connect runs code as this user.

    Raises:
        EnvNotFoundError: ``target`` names no env.
        ServeError: the address is in use (or a live server answers on ``uds``), or a
            code-running env would be served on a unix socket without a token.
    """
    hide_token()
    _not_dumpable()
    raise_fd_limit()  # connections are capped below it (see gate)
    _log_to_stderr(log_level, log_format)
    app = load_app(target) if isinstance(target, str) else target
    config = _config_of(app) or ServerConfig.from_env()
    env_cls = getattr(getattr(getattr(app, "state", None), "openenv", None), "env_cls", None)
    if uds is not None and config.token is None and not insecure_no_token:
        if getattr(env_cls, "runs_code", False):
            raise ServeError(
                f"refusing to serve {env_cls.env_name()}, which runs code, on {uds} without a "  # type: ignore[union-attr]
                "token: anyone who may connect would run code as this user; set OPENENV_TOKEN, "
                "or pass --insecure-no-token"
            )
    overrides: dict[str, Any] = {"log_level": log_level}
    if log_format == "json":
        overrides["log_config"] = None  # uvicorn's own lines go through our JSON handler
    server = uvicorn.Server(uvicorn_config(app, host, port, uds, **overrides))
    sock = bind_socket(host, port, uds, uds_mode)
    bound = os.stat(uds) if uds is not None else None
    terminated = _note_sigterm()
    try:
        if watch_parent:
            exit_when_stdin_closes(server)
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(_serve_and_announce(server, sock, uds, ready_fd, ready_file))
    finally:
        sock.close()
        if uds is not None and bound is not None:
            _remove_socket_file(uds, bound)
    if terminated:
        # uvicorn shut down gracefully on SIGTERM and passed the signal on to us; now that the
        # socket file is gone, end the way SIGTERM ends a process.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


def _note_sigterm() -> list[int]:
    """Record SIGTERM instead of dying at once: uvicorn handles it while it serves, then
    re-raises it to the handler it found, which would end the process before clean-up."""
    received: list[int] = []
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    return received


def _log_to_stderr(level: str, log_format: str = "text") -> None:
    """Sessions opened and closed (info), env errors (info; tracebacks at debug), refused
    handshakes and failures (warning) from the ``openenv.server`` logger. Tokens and fork
    tickets never appear (:class:`~openenv.observability.logs.Redact` also guards uvicorn's
    and websockets' debug lines). In JSON, every line of the process is JSON."""
    from openenv.observability.logs import JsonFormatter, Redact

    if log_format not in ("text", "json"):
        raise ValueError(f"log_format must be 'text' or 'json', not {log_format!r}")
    logger = logging.getLogger("openenv")
    for name in ("openenv", "uvicorn.error"):
        named = logging.getLogger(name)
        if not any(isinstance(f, Redact) for f in named.filters):
            named.addFilter(Redact())
    logging.getLogger("uvicorn").setLevel(level.upper())
    logger.setLevel(level.upper())
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(secrets=[ServerConfig.from_env().token]))
        logging.getLogger().addHandler(handler)  # uvicorn's, asyncio's and ours
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def bind_socket(
    host: str, port: int, uds: str | None, uds_mode: int | None = None
) -> socket.socket:
    """A listening socket on ``uds`` or ``host:port``.

    A unix socket is created with mode ``uds_mode`` (default ``$OPENENV_UDS_MODE``, else 0o600)
    by the umask in force at ``bind``: never a window with wider permissions, and no ``chmod``
    by path (which a symlink swapped in after ``bind`` would redirect). A socket file left by a
    server that is gone is replaced; one where a server still answers is refused.

    Raises:
        ServeError: the port is in use, another server answers on ``uds``, or ``uds`` is
            something else than a socket.
    """
    if uds is not None:
        mode = uds_mode if uds_mode is not None else _uds_mode_from_env()
        _clear_stale_socket(uds)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o777 & ~mode)
        try:
            sock.bind(uds)
        except OSError as exc:
            sock.close()
            raise ServeError(f"cannot listen on {uds}: {exc.strerror or exc}") from None
        finally:
            os.umask(previous)
        sock.listen(2048)
        return sock
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"cannot listen on {host}:{port}: the address is in use (another server?); "
                "pick another --port, or --port 0 for any free one"
            ) from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _uds_mode_from_env() -> int:
    text = os.environ.get("OPENENV_UDS_MODE", "")
    try:
        mode = int(text, 8) if text else 0o600
    except ValueError:
        raise ServeError(f"OPENENV_UDS_MODE must be octal permission bits, not {text!r}") from None
    if mode & ~0o777:
        raise ServeError(f"OPENENV_UDS_MODE must be permission bits (0o777 at most), not {text}")
    return mode


def _not_dumpable() -> None:
    """PR_SET_DUMPABLE 0: other processes of this user (an env's interpreter, its children)
    can no longer read this one's environ or memory through /proc, nor ptrace it. Linux only."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        logging.getLogger("openenv.server").warning("could not make the server non-dumpable")


def _clear_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServeError(f"cannot listen on {path}: it exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT_S)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # stale: its server is gone
        return
    except OSError:
        pass  # it exists and does not refuse: treat it as live
    finally:
        probe.close()
    raise ServeError(
        f"cannot listen on {path}: another server answers there; stop it or pick another --uds"
    )


def _remove_socket_file(path: str, bound: os.stat_result) -> None:
    """Remove our socket file, unless another server has replaced it since."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (bound.st_dev, bound.st_ino):
        os.unlink(path)


async def _serve_and_announce(
    server: uvicorn.Server,
    sock: socket.socket,
    uds: str | None,
    ready_fd: int | None,
    ready_file: str | None,
) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # re-raise why start-up failed
            raise ServeError("the server stopped during start-up")
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
