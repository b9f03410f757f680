"""Finding an env package from what a person types, on top of :mod:`openenv.registry`.

Beyond the registry's forms (a registered name such as ``echo``, a module path such as
``envs.echo_env``, a directory relative to the current one), a directory may be given by any
path (``/abs/path/demo_env``, ``../x/demo_env``): the directory above its outermost package goes
on ``sys.path``, so ``demo_env`` scaffolded by ``openenv init`` anywhere imports as
``demo_env``, and ``envs/echo_env`` still as ``envs.echo_env``. An env package's app is
``<package>.server.app:app``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from openenv.registry import import_env_module as _import
from openenv.registry import module_path

__all__ = ["app_of", "import_env_module", "module_name"]


def module_name(target: str) -> str:
    """The dotted module name ``target`` denotes, making its directory importable if need be."""
    path = Path(target)
    if not path.is_dir():
        return module_path(target)
    directory = path.resolve()
    parts = [directory.name]
    parent = directory.parent
    while (parent / "__init__.py").is_file():  # inside a package: import it as its child
        parts.insert(0, parent.name)
        parent = parent.parent
    if str(parent) not in sys.path:
        sys.path.insert(0, str(parent))
    return ".".join(parts)


def import_env_module(target: str) -> ModuleType:
    """Import the env package (or module) ``target`` names.

    Raises:
        EnvNotFoundError: no such module, or it imports one that is not installed.
    """
    return _import(target, module_name(target))


def app_of(module: ModuleType) -> Any | None:
    """The ASGI app of an env package or app module: its ``app`` attribute, else the ``app`` of
    its ``server.app`` submodule; None when it has neither."""
    app = getattr(module, "app", None)
    if app is not None:
        return app
    if not hasattr(module, "__path__"):
        return None  # a plain module has no submodules
    try:
        submodule = importlib.import_module(f"{module.__name__}.server.app")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"{module.__name__}.server", f"{module.__name__}.server.app"):
            raise  # the app exists but imports something missing: that is the real error
        return None
    return getattr(submodule, "app", None)
