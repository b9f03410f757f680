"""Every env by name: what a person types (``echo``, ``envs.echo_env``, ``envs/echo_env``,
``pkg.module:app``, ``scheme:rest``) becomes one :class:`EnvSpec`, which says where the env's
code is, what serves it and which image runs it. ``openenv serve``, ``build``, ``bench`` and
``validate``, the Gymnasium adapter and ``openenv init`` all find envs here and nowhere else.

Names come from the ``openenv.envs`` entry points that installed env packages declare
(``echo = "envs.echo_env"`` in this project's ``pyproject.toml``). Whole families of envs come
from the ``openenv.env_schemes`` entry points: ``gym = "some.module:spec_of"`` makes
``gym:CartPole-v1`` the spec ``spec_of("CartPole-v1")`` returns. Both are read in every process
(a server started by a provider, a container), so a name found here is found there too.

This module sits low (the server imports it): it imports nothing of openenv above the
exceptions, and finds an env's client by its ``server_app`` attribute, not by class.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from openenv.exceptions import EnvNotFoundError

__all__ = [
    "ENTRY_POINT_GROUP",
    "SCHEME_GROUP",
    "EnvSpec",
    "app_of",
    "image_name",
    "registered_envs",
    "resolve",
]

ENTRY_POINT_GROUP = "openenv.envs"
SCHEME_GROUP = "openenv.env_schemes"


def image_name(name: str) -> str:
    """The image of the env package ``name`` (a module path or a directory): its last part,
    dashed and lower-cased (Docker's rule), tagged ``latest``: ``envs.echo_env`` ->
    ``echo-env:latest``. The one rule every command and template uses."""
    last = name.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[-1]
    return f"{last.replace('_', '-').lower()}:latest"


@dataclass(frozen=True)
class EnvSpec:
    """One env: where its code is, what serves it, which image runs it.

    A scheme (see the module docstring) may return a subclass that overrides the methods,
    e.g. to make its app from ``options`` instead of importing one.

    Attributes:
        name: what finds this spec again, in any process: ``resolve(spec.name)`` gives it back,
            so ``openenv serve`` and providers are handed this string.
        module: the import path of the package (or module) the env lives in.
        image: the Docker image that serves it.
        app: ``module:attribute`` of its ASGI app; None: the package's ``server.app:app``,
            or the module's own ``app``.
        options: keyword arguments for the env behind the app (none for env packages, whose
            app is made once at import; a scheme's envs may take some, e.g. make kwargs).
    """

    name: str
    module: str
    image: str
    app: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def import_module(self) -> ModuleType:
        """Import the env's module.

        Raises:
            EnvNotFoundError: no such module, or it imports one that is not installed.
        """
        return _import(self.module, self.name)

    def load_app(self) -> Any:
        """The env's ASGI app, as ``openenv serve`` serves it.

        Raises:
            EnvNotFoundError: no such module, or it has no app.
            ValueError: ``options`` were given; this env takes none.
        """
        if self.options:
            raise ValueError(f"env {self.name!r} takes no options, got {sorted(self.options)}")
        if self.app is None:
            app = app_of(self.import_module())
            if app is None:
                raise EnvNotFoundError(
                    f"env {self.name!r} has no app: expected {self.module}.server.app:app "
                    f"or an `app` in {self.module}"
                )
            return app
        module, _, attribute = self.app.partition(":")
        try:
            return getattr(_import(module, self.name), attribute)
        except AttributeError:
            raise EnvNotFoundError(f"{module} has no attribute {attribute!r}") from None

    def client(self) -> type[Any]:
        """The env's async client class: the one class its module exports with a
        ``server_app`` (an ``openenv.launch.AsyncEnv`` subclass).

        Raises:
            EnvNotFoundError: the module exports none, or more than one.
        """
        module = self.import_module()
        found = {
            value
            for value in vars(module).values()
            if isinstance(value, type) and isinstance(getattr(value, "server_app", None), str)
        }
        if len(found) != 1:
            raise EnvNotFoundError(
                f"{self.module} must export exactly one AsyncEnv subclass with a server_app, "
                f"found {len(found)}"
            )
        return found.pop()

    @property
    def action_type(self) -> type[Any]:
        """The env's action type (its client's)."""
        return self.client().action_type  # type: ignore[no-any-return]

    @property
    def observation_type(self) -> type[Any]:
        """The env's observation type (its client's)."""
        return self.client().observation_type  # type: ignore[no-any-return]

    @property
    def state_type(self) -> type[Any]:
        """The env's state type (its client's)."""
        return self.client().state_type  # type: ignore[no-any-return]

    def directory(self) -> Path:
        """The folder of the env's package (``openenv build`` looks for ``server/Dockerfile``
        there).

        Raises:
            EnvNotFoundError: no such module.
        """
        module = self.import_module()
        paths = getattr(module, "__path__", None)
        return Path(paths[0]) if paths else Path(str(module.__file__)).parent


def registered_envs() -> dict[str, str]:
    """Registered env names and the packages they name, e.g. ``{"echo": "envs.echo_env"}``."""
    return {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}


def resolve(target: str) -> EnvSpec:
    """The env ``target`` names.

    ``target`` is ``scheme:rest`` for a scheme registered under ``openenv.env_schemes``, a
    name registered under ``openenv.envs`` (``echo``), an env package's module path
    (``envs.echo_env``), its directory by any path (``envs/echo_env``, ``/abs/demo_env``: the
    folder above its outermost package goes on ``sys.path``, so ``openenv init``'s packages
    import from anywhere), or ``module:attribute`` of an app (``pkg.server.app:app``).

    Raises:
        EnvNotFoundError: nothing by that name exists (a module is looked up, not imported).
    """
    prefix, colon, rest = target.partition(":")
    if colon:
        for point in entry_points(group=SCHEME_GROUP, name=prefix):
            spec = point.load()(rest)
            if not isinstance(spec, EnvSpec):
                raise TypeError(f"the {prefix!r} scheme made {spec!r}, not an EnvSpec")
            return spec
        module = _module_of(prefix, target)
        return EnvSpec(name=target, module=module, image=image_name(module), app=target)
    registered = registered_envs().get(target)
    if registered is not None:
        return EnvSpec(name=target, module=registered, image=image_name(registered))
    module = _module_of(target, target)
    name = str(Path(target).resolve()) if Path(target).is_dir() else target
    return EnvSpec(name=name, module=module, image=image_name(module))


def _module_of(given: str, target: str) -> str:
    """The module path ``given`` (a module path or a directory) denotes; a directory that does
    not import as that module already (an installed or editable package does) is made
    importable: sys.path is the process's, and a checkout on it shadows installed metadata.

    Raises:
        EnvNotFoundError: there is no such module.
    """
    path = Path(given)
    if path.is_dir():
        directory = path.resolve()
        parts = [directory.name]
        parent = directory.parent
        while (parent / "__init__.py").is_file():  # inside a package: import it as its child
            parts.insert(0, parent.name)
            parent = parent.parent
        module = ".".join(parts)
        if directory not in _locations(module) and str(parent) not in sys.path:
            sys.path.insert(0, str(parent))
        return module
    module = given.removesuffix(".py")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package is missing, or it is no module name
        found = None
    if found is None:
        raise _not_found(target, module)
    return module


def _locations(module: str) -> list[Path]:
    """The folders ``module`` would import from now (none if it would not import)."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if found is None:
        return []
    if found.submodule_search_locations is not None:
        return [Path(p).resolve() for p in found.submodule_search_locations]
    return [Path(found.origin).resolve().parent] if found.origin else []


def _import(module: str, name: str) -> ModuleType:
    """Import ``module``, the code of the env called ``name``.

    Raises:
        EnvNotFoundError: the module does not exist; a dependency the module imports that is
            missing is reported as such (the env exists but cannot load here).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module == missing or module.startswith(missing + ".")):
            raise _not_found(name, missing) from None
        raise EnvNotFoundError(
            f"env {name!r} cannot load here: it imports {missing!r}, which is not installed"
        ) from exc


def _not_found(name: str, module: str) -> EnvNotFoundError:
    known = ", ".join(sorted(registered_envs())) or "none"
    return EnvNotFoundError(
        f"no env {name!r}: no module named {module!r} (give an env package such as "
        f"envs.echo_env, its directory, module:app, or a registered name: {known})"
    )


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
