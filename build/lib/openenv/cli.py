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
    target = args.env or os.environ.get("OPENENV_APP")
    if not target:
        print("openenv serve: name the env to serve, or set OPENENV_APP", file=sys.stderr)
        return 2
    serve(
        target,
        host=args.host,
        port=args.port,
        uds=args.uds,
        ready_fd=args.ready_fd,
        ready_file=args.ready_file,
        watch_parent=args.watch_parent,
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from openenv.images import build_image

    for env_dir in args.env_dirs:
        report = asyncio.run(
            build_image(Path(env_dir), tag=args.tag, base_image=args.base_image)
        )
        print(
            f"built {report.tag}: {report.size_bytes / 1e6:.0f} MB in "
            f"{report.wheels_s + report.build_s:.1f} s "
            f"(wheels {report.wheels_s:.1f} s, image {report.build_s:.1f} s)"
        )
    return 0


def _ps(args: argparse.Namespace) -> int:
    import asyncio

    from openenv.providers.housekeeping import list_managed

    rows = asyncio.run(list_managed())
    print(f"{'CONTAINER':<13} {'IMAGE':<22} {'STATUS':<10} {'OWNER':<8} {'OWNER ALIVE':<11} POOL")
    for row in rows:
        print(
            f"{row.id[:12]:<13} {row.image:<22} {row.state:<10} {row.owner_pid:<8} "
            f"{'yes' if row.owner_alive else 'no':<11} {row.pool}"
        )
    return 0


def _prune(args: argparse.Namespace) -> int:
    import asyncio

    from openenv.providers.housekeeping import prune

    removed = asyncio.run(prune(everything=args.all))
    print(f"removed {len(removed)} container(s)" + "".join(f"\n  {c[:12]}" for c in removed))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openenv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve an environment over WebSocket",
        description="Serve ENV (an env package such as envs.echo_env, its path, or module:app; "
        "default: $OPENENV_APP, which env images set). "
        "Limits come from OPENENV_* variables (OPENENV_TOKEN, OPENENV_MAX_SESSIONS, "
        "OPENENV_MAX_FRAME_BYTES, OPENENV_PING_INTERVAL, OPENENV_PING_TIMEOUT, "
        "OPENENV_STEP_TIMEOUT).",
    )
    serve.add_argument("env", nargs="?")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--uds", metavar="PATH", help="listen on a unix socket instead of TCP")
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--ready-file", help=argparse.SUPPRESS)
    serve.add_argument("--watch-parent", action="store_true", help="exit when stdin closes")
    serve.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="allow listening beyond loopback without OPENENV_TOKEN",
    )
    serve.set_defaults(handler=_serve)

    build = commands.add_parser(
        "build",
        help="build env images hermetically",
        description="Build ENV_DIR/server/Dockerfile with the repository root as context: wheels "
        "are built on the host, installed in the image with pip --no-index, and the build has no "
        "network. Run from the repository root.",
    )
    build.add_argument("env_dirs", nargs="+", metavar="ENV_DIR")
    build.add_argument("--tag", help="image tag (default: <env-name>:latest, e.g. echo-env:latest)")
    build.add_argument("--base-image", default="python:3.11-slim")
    build.set_defaults(handler=_build)

    ps = commands.add_parser("ps", help="list openenv-managed containers")
    ps.set_defaults(handler=_ps)

    prune = commands.add_parser(
        "prune", help="remove managed containers whose owner process is gone"
    )
    prune.add_argument("--all", action="store_true", help="remove every managed container")
    prune.set_defaults(handler=_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``openenv`` command."""
    args = _parser().parse_args(argv)
    sys.exit(args.handler(args))
