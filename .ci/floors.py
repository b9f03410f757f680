"""Print pip pins of the lowest releases pyproject.toml allows for the client's dependencies
and the server extra (``name>=X`` becomes ``name==X``), for ``make test-floor``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

project = tomllib.loads(Path(__file__).parents[1].joinpath("pyproject.toml").read_text())["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["server"]:
    name, rest = re.match(r"([A-Za-z0-9_.-]+)(.*)", requirement).groups()  # type: ignore[union-attr]
    floor = re.search(r">=\s*([^,;\s]+)", rest)
    marker = rest.split(";", 1)[1].strip() if ";" in rest else ""
    if floor:
        print(f"{name}=={floor.group(1)}" + (f"; {marker}" if marker else ""))
