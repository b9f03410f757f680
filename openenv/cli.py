"""The ``openenv`` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from openenv.exceptions import EnvNotFoundError, OpenEnvError

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES = """exit codes:
  0    success
  1    the command failed; one line on stderr says why (address in use, an env server
       or container that would not start, a failed image build, no Docker daemon, ...)
  2    usage error: bad arguments, or no env by that name
  130  interrupted (Ctrl-C)
"""


def _serve(args: argparse.Namespace) -> int:
    from openenv.server.config import ServerConfig, hide_token
    from openenv.server.serve import is_loopback, serve

    hide_token()  # before any env code is imported (the env is loaded here with --kwargs)
    has_token = ServerConfig.from_env().token is not None
    if args.uds is None and not is_loopback(args.host) and not has_token:
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
    app = _with_kwargs(target, args.kwargs)
    serve(
        app,
        host=args.host,
        port=args.port,
        uds=args.uds,
        ready_fd=args.ready_fd,
        ready_file=args.ready_file,
        watch_parent=args.watch_parent,
        log_level=args.log_level,
        log_format=args.log_format,
        uds_mode=args.uds_mode,
        insecure_no_token=args.insecure_no_token,
    )
    return 0


def _with_kwargs(target: str, kwargs: str | None) -> object:
    """``target``, or its app made with the keyword arguments ``kwargs`` (a JSON object, from
    ``--kwargs`` or, for providers and images, ``OPENENV_KWARGS``): ``gym:<id>`` passes them
    to ``gymnasium.make``; env packages take none."""
    import dataclasses
    import json

    from openenv.registry import resolve

    text = kwargs if kwargs is not None else os.environ.get("OPENENV_KWARGS")
    if not text:
        return target
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise _UsageError(f"--kwargs is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise _UsageError(f"--kwargs must be a JSON object, not {text!r}")
    spec = dataclasses.replace(resolve(target), options=options)
    try:
        return spec.load_app()
    except ValueError as exc:  # an env package: it takes no options
        raise _UsageError(str(exc)) from None


class _UsageError(EnvNotFoundError):
    """Bad arguments: exit 2, like a name that finds no env."""


def _build(args: argparse.Namespace) -> int:
    import asyncio

    from openenv.images import build_image, env_dir_of
    from openenv.registry import resolve

    if args.tag and len(args.env_dirs) > 1:
        print("openenv build: --tag names one image; build one env at a time", file=sys.stderr)
        return 2
    # Every name checked up front.
    builds = [(env_dir_of(name), args.tag or resolve(name).image) for name in args.env_dirs]
    for env_dir, tag in builds:
        report = asyncio.run(build_image(env_dir, tag=tag, base_image=args.base_image))
        print(
            f"built {report.tag}: {report.size_bytes / 1e6:.0f} MB in "
            f"{report.wheels_s + report.build_s:.1f} s "
            f"(wheels {report.wheels_s:.1f} s, image {report.build_s:.1f} s)"
        )
    return 0


def _ps(args: argparse.Namespace) -> int:
    import asyncio

    if args.ray:
        return _ps_ray(args.ray_address)
    from openenv.providers.housekeeping import list_managed

    rows = asyncio.run(list_managed())
    print(f"{'CONTAINER':<13} {'IMAGE':<22} {'STATUS':<10} {'OWNER':<8} {'OWNER ALIVE':<11} POOL")
    for row in rows:
        print(
            f"{row.id[:12]:<13} {row.image:<22} {row.state:<10} {row.owner_pid:<8} "
            f"{'yes' if row.owner_alive else 'no':<11} {row.pool}"
        )
    return 0


def _ps_ray(address: str | None) -> int:
    from openenv.providers.ray_housekeeping import list_hosts

    rows = list_hosts(address)
    print(
        f"{'NODE':<13} {'PROVIDER':<13} {'BACKEND':<8} {'HOST PID':<9} {'SERVER':<14} "
        f"{'ALIVE':<6} ADDRESS"
    )
    for row in rows:
        node = row.node_id[:12]
        if row.info is None:
            print(f"{node:<13} {row.provider:<13} {'?':<8} {'?':<9} (env-host does not answer)")
            continue
        info = row.info
        head = f"{node:<13} {row.provider:<13} {info['backend']:<8} {info['pid']:<9}"
        if not info["servers"]:
            print(f"{head} (no servers)")
        for server in info["servers"]:
            alive = "yes" if server["alive"] else "no"
            print(f"{head} {server['id'][:12]:<14} {alive:<6} {server['address']}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    import asyncio

    if args.ray:
        return _prune_ray(args.ray_address, args.all)
    from openenv.exceptions import ProviderError
    from openenv.providers.housekeeping import prune
    from openenv.providers.owners import prune_folders

    folders = prune_folders(everything=args.all)
    print(f"removed {len(folders)} temp folder(s)" + "".join(f"\n  {f}" for f in folders))
    try:
        removed = asyncio.run(prune(everything=args.all))
    except ProviderError as exc:
        print(f"openenv prune: containers skipped: {exc}", file=sys.stderr)
        return 1
    print(f"removed {len(removed)} container(s)" + "".join(f"\n  {c[:12]}" for c in removed))
    return 0


def _prune_ray(address: str | None, everything: bool) -> int:
    from openenv.providers.ray_housekeeping import prune_cluster

    report = prune_cluster(address, everything=everything)
    print(f"ended {len(report.hosts_killed)} env-host actor(s) (and their servers)")
    folders = sum(len(paths) for paths in report.folders.values())
    print(f"removed {folders} temp folder(s) on {len(report.folders)} node(s)")
    removed = sum(len(ids) for ids in report.containers.values())
    print(f"removed {removed} container(s) on {len(report.containers)} node(s)")
    for node, ids in report.containers.items():
        print("".join(f"\n  {node[:12]} {c[:12]}" for c in ids).lstrip("\n"))
    for node in report.unreachable:
        print(f"node {node[:12]} did not answer")
    return 1 if report.unreachable else 0


def _top(args: argparse.Namespace) -> int:
    import asyncio

    from openenv.top import run as run_top

    if args.interval <= 0:
        print("openenv top: --interval must be positive", file=sys.stderr)
        return 2
    return asyncio.run(run_top(args.ray, args.ray_address, args.interval, args.once))


def _bench(args: argparse.Namespace) -> int:
    import json

    if args.compare:  # checked before anything starts: the references need these
        import aiohttp  # noqa: F401
        import httptools  # noqa: F401
        import httpx  # noqa: F401

    from openenv.bench import run_fast
    from openenv.bench.runner import BenchOptions, format_result, run_bench

    options = BenchOptions(
        env=args.env,
        provider=args.provider,
        sessions=args.sessions,
        steps=args.steps,
        duration=args.duration,
        message_size=args.message_size,
        servers=args.servers,
        backend=args.backend,
        ray_address=args.ray_address,
        compare=args.compare,
        rounds=args.rounds,
        progress=sys.stderr.isatty(),
    )
    result = run_fast(run_bench(options))
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result.as_json(), out, indent=2)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openenv",
        description="Serve, build, measure and clean up openenv environments.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve an environment over WebSocket",
        description="Serve ENV (an env package such as envs.echo_env, its path, module:app, or "
        "gym:ID for any registered Gymnasium env, e.g. gym:CartPole-v1; "
        "default: $OPENENV_APP, which env images set). "
        "Limits come from OPENENV_* variables (OPENENV_TOKEN, OPENENV_MAX_SESSIONS, "
        "OPENENV_MAX_FRAME_BYTES, OPENENV_PING_INTERVAL, OPENENV_PING_TIMEOUT, "
        "OPENENV_STEP_TIMEOUT).",
    )
    serve.add_argument(
        "env",
        nargs="?",
        help="a registered env name (echo), an env package, its path, module:app, or gym:ID",
    )
    serve.add_argument(
        "--kwargs",
        metavar="JSON",
        help="keyword arguments for the env as a JSON object: with gym:ID, gymnasium.make's "
        "(default: $OPENENV_KWARGS)",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="0: any free port (default: 8000)")
    serve.add_argument("--uds", metavar="PATH", help="listen on a unix socket instead of TCP")
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--ready-file", help=argparse.SUPPRESS)
    serve.add_argument("--watch-parent", action="store_true", help="exit when stdin closes")
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="warning",
        help="info: sessions opened and closed, env errors; warning: refused sessions, "
        "step time-outs (default). Tokens are never logged.",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("OPENENV_LOG_FORMAT", "text"),
        help="json: one JSON object per line, with session_id and request_id fields "
        "(default: $OPENENV_LOG_FORMAT, else text)",
    )
    serve.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="allow listening beyond loopback, or serving an env that runs code on a unix "
        "socket, without OPENENV_TOKEN",
    )
    serve.add_argument(
        "--uds-mode",
        type=lambda text: int(text, 8),
        default=None,
        metavar="MODE",
        help="permission bits of the --uds socket, in octal (default: $OPENENV_UDS_MODE, else "
        "600: your user only; 660 lets your group in)",
    )
    serve.set_defaults(handler=_serve)

    build = commands.add_parser(
        "build",
        help="build env images hermetically",
        description="Build the image of each ENV (a registered name such as echo, an env "
        "package such as envs.coding_env, or its directory) from its server/Dockerfile: this "
        "project's wheel and the wheels it needs are gathered on the host (cached in "
        "~/.cache/openenv/wheelhouse), installed in the image with pip --no-index, and the "
        "build has no network. Works from any directory, from a checkout or a wheel install.",
    )
    build.add_argument("env_dirs", nargs="+", metavar="ENV")
    build.add_argument("--tag", help="image tag (default: <env-name>:latest, e.g. echo-env:latest)")
    build.add_argument(
        "--base-image",
        help="image to build FROM (default: openenv-base:bookworm when this machine has it, "
        "as made by `make base-image`; else python:3.11-slim)",
    )
    build.set_defaults(handler=_build)

    bench = commands.add_parser(
        "bench",
        help="measure env pool throughput (and, with --compare, the references)",
        description="Drive SESSIONS env sessions from one asyncio process, each in its own "
        "closed loop, and report steps/s, p50/p99 step latency, start-up time and client CPU per "
        "step. --compare adds, in interleaved rounds of the same run, with as many server "
        "processes and connections over the same transport: the Sans-I/O websockets ceiling, "
        "the typical websockets asyncio app and a per-step HTTP POST baseline.",
    )
    bench.add_argument(
        "--env",
        default="echo",
        help="a registered env name (echo, coding, ...), an env package's module path or "
        "directory, or module:app (default: echo)",
    )
    bench.add_argument(
        "--provider",
        choices=["process", "docker", "ray"],
        default="process",
        help="where the env servers run: local processes (default), containers of the env's "
        "image, or a Ray cluster",
    )
    bench.add_argument(
        "--backend",
        choices=["process", "docker"],
        default="process",
        help="with --provider ray: run servers as processes or containers on each node",
    )
    bench.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --provider ray: the cluster to join (default: $RAY_ADDRESS, else the one "
        "started on this machine)",
    )
    bench.add_argument(
        "--sessions", type=int, default=8, help="concurrent env sessions (default: 8)"
    )
    length = bench.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="steps per session, instead of --duration")
    length.add_argument(
        "--duration", type=float, default=5.0, help="seconds per measurement (default: 5)"
    )
    bench.add_argument(
        "--message-size",
        type=int,
        default=100,
        metavar="BYTES",
        help="size of each step's action, e.g. echo's message (default: 100)",
    )
    bench.add_argument(
        "--servers", type=int, help="server processes for --provider process (default: 1 per core)"
    )
    bench.add_argument(
        "--compare",
        action="store_true",
        help="also measure the references (Sans-I/O ceiling, websockets app, per-step HTTP) "
        "in interleaved rounds; needs the bench extra",
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="with --compare: rounds of ours and each reference back to back; a ratio is "
        "the median of the per-round ratios",
    )
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    bench.set_defaults(handler=_bench)

    ps = commands.add_parser(
        "ps",
        help="list openenv-managed containers (--ray: env servers across a Ray cluster)",
        description="List the managed containers on the local Docker daemon; with --ray, the "
        "env-host actors of every RayProvider in a Ray cluster and their servers.",
    )
    _ray_options(ps)
    ps.set_defaults(handler=_ps)

    top = commands.add_parser(
        "top",
        help="a live view of the env servers running here (--ray: across a Ray cluster)",
        description="Per env server the providers of this machine run (local processes and "
        "Docker containers; with --ray, every env-host of a Ray cluster): sessions, steps/s, "
        "p50/p99 server time per step over the last interval, errors, CPU and memory, from "
        "each server's /metrics. q or Ctrl-C quits.",
    )
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="print one table and exit")
    _ray_options(top)
    top.set_defaults(handler=_top)

    prune = commands.add_parser(
        "prune",
        help="remove managed containers and providers' temp folders whose owner process is gone",
        description="Remove the managed containers and providers' temp folders whose owner "
        "process is gone (--all: every one). With --ray, remove the containers env-hosts started "
        "on every node of a Ray cluster; with --ray --all, first end every env-host actor of the "
        "cluster, and their servers with them.",
    )
    prune.add_argument(
        "--all", action="store_true", help="remove every managed container and temp folder"
    )
    _ray_options(prune)
    prune.set_defaults(handler=_prune)

    from openenv.cli_authoring import add_commands as add_authoring_commands

    add_authoring_commands(commands)
    return parser


def _ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", action="store_true", help="across a Ray cluster")
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --ray: the cluster (default: $RAY_ADDRESS, else the one on this machine)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``openenv`` command; every expected failure is one line on stderr and an exit
    code from :data:`EXIT_CODES`, never a traceback."""
    args = _parser().parse_args(argv)
    # Ctrl-C ends every command with 130, also one started with SIGINT ignored (nohup, `cmd &`
    # in a script): uvicorn would otherwise shut down on it and hand it back to SIG_IGN, exit 0.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(run(args))


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; returns its exit code."""
    try:
        code: int = args.handler(args)
        return code
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise  # not an optional dependency: a bug, with its traceback
        _fail(args.command, f"{exc.name} is not installed: pip install 'openenv-rl[{extra}]'")
        return 1
    except EnvNotFoundError as exc:
        _fail(args.command, exc)
        return 2
    except OpenEnvError as exc:
        _fail(args.command, exc)
        return 1


# The optional dependencies a command may need, and the extra (pyproject.toml) that has each.
_EXTRA_OF = {
    "ray": "ray",
    "aiodocker": "docker",
    "aiohttp": "bench",
    "httptools": "bench",
    "httpx": "bench",
    "uvicorn": "server",
    "starlette": "server",
    "gymnasium": "gym",
}


def _fail(command: str, error: BaseException | str) -> None:
    print(f"openenv {command}: {error}", file=sys.stderr)
