"""``openenv build`` packs the project's wheel from the installed metadata, wherever it is
found: with the checkout on ``sys.path`` (``openenv build envs/x`` puts it there), an editable
install's metadata is the checkout's egg-info, whose file is PKG-INFO, not METADATA."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from openenv.images import project_wheel

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("checkout_on_path", [False, True])
def test_the_wheel_carries_the_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkout_on_path: bool
) -> None:
    if checkout_on_path:
        monkeypatch.syspath_prepend(str(REPO))
    else:
        monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != REPO])
    with zipfile.ZipFile(project_wheel(tmp_path)) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = wheel.read(name).decode()
    assert "Name: openenv-rl" in metadata
    assert "Provides-Extra: terminal" in metadata
