"""Env packages by name: ``echo`` -> ``envs.echo_env``, through the ``openenv.envs`` entry
points that installed env packages declare (this project's are in its ``pyproject.toml``).

``openenv serve``, ``openenv build`` and ``openenv bench`` all accept such a name, an env
package's module path (``envs.echo_env``) or its directory (``envs/echo_env``).
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from openenv.exceptions import EnvNotFoundError

__all__ = ["ENTRY_POINT_GROUP", "import_env_module", "module_path", "registered_envs"]

ENTRY_POINT_GROUP = "openenv.envs"


def registered_envs() -> dict[str, str]:
    """Registered env names and the packages they name, e.g. ``{"echo": "envs.echo_env"}``."""
    return {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}


def module_path(name: str) -> str:
    """The module path ``name`` stands for: a registered name's package, a directory's dotted
    path (relative to the current directory), or ``name`` itself."""
    registered = registered_envs()
    if name in registered:
        return registered[name]
    return name.rstrip("/").replace(os.sep, ".").removesuffix(".py")


def import_env_module(name: str, module: str | None = None) -> ModuleType:
    """Import ``module`` (default: the package ``name`` stands for).

    A directory given by path is found relative to the current directory.

    Raises:
        EnvNotFoundError: the module does not exist; a dependency the module imports that is
            missing is reported as such (the env exists but cannot load here).
    """
    package = module_path(name)
    module = module or package
    if Path(name).is_dir() and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module == missing or module.startswith(missing + ".")):
            known = ", ".join(sorted(registered_envs())) or "none"
            raise EnvNotFoundError(
                f"no env {name!r}: no module named {missing!r} (give an env package such as "
                f"envs.echo_env, its directory, module:app, or a registered name: {known})"
            ) from None
        raise EnvNotFoundError(
            f"env {name!r} cannot load here: it imports {missing!r}, which is not installed"
        ) from exc
