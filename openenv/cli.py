"""The ``openenv`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import os

    from openenv.server.serve import is_loopback, serve

    if args.uds is None and not is_loopback(args.host) and not os.environ.get("OPENENV_TOKEN"):
        if not args.insecure_no_token:
            print(
                f"openenv serve: refusing to listen on {args.host} without a token; set "
                "OPENENV_TOKEN, or pass --insecure-no-token to accept anyone who can reach it",
                file=sys.stderr,
            )
            return 2
    serve(
        args.env,
        host=args.host,
        port=args.port,
        uds=args.uds,
        ready_fd=args.ready_fd,
        watch_parent=args.watch_parent,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openenv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve an environment over WebSocket",
        description="Serve ENV (an env package such as envs.echo_env, its path, or module:app). "
        "Limits come from OPENENV_* variables (OPENENV_TOKEN, OPENENV_MAX_SESSIONS, "
        "OPENENV_MAX_FRAME_BYTES, OPENENV_PING_INTERVAL, OPENENV_PING_TIMEOUT, "
        "OPENENV_STEP_TIMEOUT).",
    )
    serve.add_argument("env")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--uds", metavar="PATH", help="listen on a unix socket instead of TCP")
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--watch-parent", action="store_true", help="exit when stdin closes")
    serve.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="allow listening beyond loopback without OPENENV_TOKEN",
    )
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``openenv`` command."""
    args = _parser().parse_args(argv)
    sys.exit(args.handler(args))
