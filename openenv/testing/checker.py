"""``check_env``: every rule an env must keep, checked on the env class and its real app."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from openenv.exceptions import EnvNotFoundError
from openenv.registry import app_of, resolve
from openenv.server.environment import Environment
from openenv.testing.direct_rules import run_direct
from openenv.testing.failures import EnvCheckError, Failure
from openenv.testing.samples import SampleError, example_action
from openenv.testing.served_rules import run_served
from openenv.testing.static_rules import check_types
from openenv.types import Action

__all__ = ["RULES", "CheckReport", "check_env"]

#: Every rule, in the order checked. The README's "Authoring an env" explains each.
RULES = (
    "import",
    "types",
    "schema",
    "evolution",
    "init",
    "reset",
    "step",
    "state",
    "round-trip",
    "done",
    "blocking",
    "close",
    "not_reset",
    "isolation",
    "determinism",
    "tools",
)

EnvTarget = type[Environment[Any, Any, Any]] | ModuleType | str


@dataclass
class CheckReport:
    """What :func:`check_env` checked.

    Attributes:
        env: the env class's name.
        steps: steps taken in the directly driven episode.
        notes: what could not be checked and why (e.g. no episode ended).
        failures: broken rules (empty when ``check_env`` returned).
    """

    env: str
    steps: int = 0
    notes: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def check_env(
    env: EnvTarget,
    *,
    actions: Sequence[Action] | None = None,
    max_steps: int = 32,
    blocking_threshold: float = 0.05,
) -> CheckReport:
    """Check an env against every rule in :data:`RULES`; raise if it breaks any.

    The env is driven twice: one instance directly, as a session does (types, bookkeeping,
    codecs, ``done``, loop blocking), then through its app, in-process sessions with real
    frames (``not_reset``, both frame kinds, isolation, determinism).

    Args:
        env: the ``Environment`` subclass, its env package (module or a path such as
            ``envs.echo_env`` or ``./demo_env``, whose ``server.app:app`` is checked), or
            an app module.
        actions: what to step with; by default, the simplest valid action repeated
            ``max_steps`` times (see :mod:`openenv.testing.samples`).
        max_steps: steps to take looking for the end of an episode.
        blocking_threshold: seconds a non-blocking env's ``reset``/``step`` may hold the
            event loop on every call before it must declare ``blocking = True``.

    Returns:
        What was checked, with notes on what could not be.

    Raises:
        EnvCheckError: one line per broken rule, ``rule: subject: detail``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        report = asyncio.run(_check(env, actions, max_steps, blocking_threshold))
    else:  # called from async code: the checker needs a loop of its own
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            check = _check(env, actions, max_steps, blocking_threshold)
            report = thread.submit(asyncio.run, check).result()
    if report.failures:
        raise EnvCheckError(report.failures)
    return report


async def _check(
    target: EnvTarget,
    actions: Sequence[Action] | None,
    max_steps: int,
    threshold: float,
) -> CheckReport:
    try:
        env_cls, env_kwargs, app = _resolve(target)
    except _NotFound as missing:
        return CheckReport(str(target), failures=[missing.failure])
    report = CheckReport(env_cls.__name__)
    report.failures += check_types(env_cls)
    if report.failures:
        return report  # nothing can be driven with wrong types
    if actions is None:
        try:
            example = example_action(env_cls.action_type)
            assert isinstance(example, Action)
            actions = [example] * max_steps
        except SampleError as exc:
            subject = f"{env_cls.action_type.__name__}.{exc.field}"
            detail = f"no example action can be made ({exc}); pass actions= to check_env"
            report.failures.append(Failure("step", subject, detail))
            return report
    if not actions:
        raise ValueError("check_env needs at least one action")
    direct = await run_direct(env_cls, env_kwargs, actions, threshold)
    report.steps, report.notes, report.failures = direct.steps, direct.notes, direct.failures
    if report.failures:
        return report
    if app is None:
        from openenv.server.app import create_app

        app = create_app(env_cls, env_kwargs=env_kwargs)
    # Served sessions step at most up to where the direct episode ended.
    report.failures += await run_served(env_cls, app, actions[: max(direct.steps, 1)])
    return report


class _NotFound(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def _resolve(target: EnvTarget) -> tuple[type[Environment[Any, Any, Any]], dict[str, Any], Any]:
    """The env class, the keyword arguments its app creates it with, and the app (if any)."""
    if isinstance(target, type):
        return target, {}, None
    module = target
    if isinstance(target, str):
        try:
            module = resolve(target).import_module()
        except (ImportError, EnvNotFoundError) as exc:
            raise _NotFound(Failure("import", target, f"cannot import it: {exc}")) from exc
        except Exception as exc:  # the env's own code failed while being imported
            detail = f"importing it raised {type(exc).__name__}: {exc}"
            raise _NotFound(Failure("import", target, detail)) from exc
    assert isinstance(module, ModuleType)
    app = app_of(module)
    server = getattr(getattr(app, "state", None), "openenv", None)
    if server is not None:
        return server.env_cls, dict(server.env_kwargs), app
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Environment)
        and value.__module__ == module.__name__
    ]
    if len(found) == 1:
        return found[0], {}, None
    detail = (
        "no env found: expected an app made by create_app (its server.app:app) or exactly one "
        f"Environment subclass, found {len(found)}"
    )
    raise _NotFound(Failure("import", module.__name__, detail))
