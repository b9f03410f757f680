"""``openenv init`` and ``openenv validate``: the env author's commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_commands"]


def _init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from openenv.scaffold import ScaffoldError, scaffold

    try:
        created = scaffold(args.name, Path(args.dir), tools=args.tools)
    except ScaffoldError as exc:
        print(f"openenv init: {exc}", file=sys.stderr)
        return 2
    print(f"created {created}/")
    for path in sorted(p for p in created.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(created.parent)}")
    print(
        f"next: openenv validate {args.name} && openenv serve {args.name} "
        f"(run from {created.parent})"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from openenv.registry import resolve
    from openenv.testing import RULES, EnvCheckError, check_env

    resolve(args.env)  # no env by that name: a usage error (exit 2), not a broken rule
    try:
        report = check_env(args.env, max_steps=args.max_steps)
    except EnvCheckError as exc:
        for failure in exc.failures:
            print(failure)
        rules = len({failure.rule for failure in exc.failures})
        print(f"{args.env}: {rules} of {len(RULES)} rules broken", file=sys.stderr)
        return 1
    print(f"{args.env}: {report.env} keeps all {len(RULES)} rules ({report.steps} steps)")
    for note in report.notes:
        print(f"  note: {note}")
    return 0


def add_commands(commands: Any) -> None:
    """Add ``init`` and ``validate`` to the ``openenv`` command's subparsers."""
    init = commands.add_parser(
        "init",
        help="scaffold a new env package",
        description="Create DIR/NAME/: models, the server env and its app, clients, a "
        "Dockerfile, a README and a test. Untouched, it passes `openenv validate`, serves with "
        "`openenv serve` and builds with `openenv build`. Never overwrites anything.",
    )
    init.add_argument("name", metavar="NAME", help="a lowercase Python identifier, e.g. demo_env")
    init.add_argument("--dir", default=".", help="where to create NAME/ (default: here)")
    init.add_argument(
        "--tools",
        action="store_true",
        help="the env also offers its game as a tool (an @tool method), with a test of it",
    )
    init.set_defaults(handler=_init)

    validate = commands.add_parser(
        "validate",
        help="check an env against every rule of openenv.testing.check_env",
        description="Check ENV (an env package such as envs.echo_env, or its directory) "
        "against every rule: one line per broken rule, exit code 1 if any.",
    )
    validate.add_argument("env", metavar="ENV")
    validate.add_argument(
        "--max-steps", type=int, default=32, help="steps to take looking for an episode's end"
    )
    validate.set_defaults(handler=_validate)
