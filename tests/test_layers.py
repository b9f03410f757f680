"""The layers import downward only, and the library never imports its examples (``envs``).

Read from the source (every import statement, also the lazy ones inside functions), so an
import that only runs on some code path is caught as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "openenv"

# What each layer may not import. Lower layers: types, tools, protocol, upstream, endpoint,
# exceptions, procfs.
FORBIDDEN = {
    "openenv.types": ("openenv.client", "openenv.server", "openenv.providers", "openenv.launch"),
    "openenv.protocol": ("openenv.client", "openenv.server", "openenv.providers", "openenv.launch"),
    "openenv.upstream": ("openenv.client", "openenv.server", "openenv.providers", "openenv.launch"),
    "openenv.tools": ("openenv.client", "openenv.server", "openenv.providers", "openenv.launch"),
    # Gymnasium on the wire (messages, exact spaces): shared by the server and openenv.gym.
    "openenv.gym_wire": ("openenv.client", "openenv.server", "openenv.providers", "openenv.launch"),
    "openenv.exceptions": ("openenv",),
    # Counters, traces and logs sit under the client and the server, which both use them.
    "openenv.observability": (
        "openenv.client",
        "openenv.server",
        "openenv.providers",
        "openenv.launch",
        "openenv.bench",
    ),
    "openenv.client": ("openenv.server", "openenv.providers", "openenv.launch", "openenv.bench"),
    "openenv.server": ("openenv.client", "openenv.providers", "openenv.launch", "openenv.bench"),
    "openenv.providers": ("openenv.client", "openenv.launch", "openenv.bench"),
    "openenv.launch": ("openenv.bench", "openenv.cli"),
    # The authoring tools: the checker drives server-side code only; the scaffold is text.
    "openenv.testing": ("openenv.client", "openenv.providers", "openenv.launch", "openenv.gym"),
    "openenv.scaffold": ("openenv.client", "openenv.server", "openenv.launch", "openenv.testing"),
    "openenv.gym": ("openenv.server", "openenv.testing", "openenv.cli"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_point_down_only(path: Path) -> None:
    name = _module_name(path)
    banned = [b for layer, bs in FORBIDDEN.items() if _under(name, layer) for b in bs]
    wrong = sorted(
        i for i in _imports(path) if any(_under(i, b) for b in banned) and not _under(i, name)
    )
    assert wrong == [], f"{name} imports {wrong} from a layer above it"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_the_library_never_imports_its_examples(path: Path) -> None:
    examples = sorted(i for i in _imports(path) if _under(i, "envs"))
    assert examples == [], f"{_module_name(path)} imports the example envs {examples}"


def test_the_rules_see_lazy_imports() -> None:
    # A check that cannot fail is no check: the launch layer does import providers lazily.
    assert "openenv.providers.docker" in _imports(PACKAGE / "launch" / "envs.py")
