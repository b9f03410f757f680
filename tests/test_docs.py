"""Every ```python block of the README, the manual (docs/) and the envs' READMEs runs as
written, and prints what the page says.

Conventions, visible in the pages themselves:

- ``print(...)  # TEXT`` states the line that print writes; the test checks those lines appear
  in the block's output, in order (``# e.g. ...`` marks output that varies: not checked).
- A block that starts a container (``from_docker_image``, ``LocalDockerProvider``) runs only
  where Docker tests run (the ``docker_images`` fixture).
- A block whose first line is ``# continues the block above`` runs after that block, in the
  same interpreter.
- A block whose first line is ``# not runnable: WHY`` is skipped, visibly; keep them rare.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = sorted(
    [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "envs").glob("*/README.md")]
)
CONTINUES = "# continues the block above"
NOT_RUNNABLE = "# not runnable:"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_STATED = re.compile(r"^\s*print\(.*\)\s+#\s(?!e\.g\.)(.+?)\s*$")
_DOCKER = ("from_docker_image", "LocalDockerProvider")


@dataclass(frozen=True)
class Block:
    page: str  # the page, relative to the repository
    line: int  # where it starts in the page
    code: str  # what runs: the block, after the blocks it continues

    @property
    def own(self) -> str:
        return self.code.rsplit(f"\n{CONTINUES}\n", 1)[-1]

    @property
    def expected(self) -> list[str]:
        return [m.group(1) for m in map(_STATED.match, self.own.splitlines()) if m]

    @property
    def needs_docker(self) -> bool:
        return any(word in self.code for word in _DOCKER)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def page_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    page = str(path.relative_to(REPO))
    blocks: list[Block] = []
    for match in _FENCE.finditer(text):
        code = match.group(1)
        line = text.count("\n", 0, match.start()) + 1
        if code.startswith(CONTINUES):
            assert blocks, f"{page}:{line} continues no block"
            code = f"{blocks[-1].code}\n{code}"
        blocks.append(Block(page, line, code))
    return blocks


BLOCKS = [block for page in PAGES for block in page_blocks(page)]


def test_the_pages_have_python_blocks() -> None:
    readme = [block for block in BLOCKS if block.page == "README.md"]
    assert len(readme) >= 5
    assert any(block.needs_docker for block in readme)
    assert any(not block.needs_docker for block in readme)
    assert any(block.page.startswith("docs/") for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_block_runs_as_written(block: Block, request: pytest.FixtureRequest) -> None:
    if block.own.startswith(NOT_RUNNABLE):
        pytest.skip(block.own.splitlines()[0])
    if block.needs_docker:
        request.getfixturevalue("docker_images")
    done = subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert done.returncode == 0, f"{block.where} failed:\n{done.stderr[-3000:]}"
    lines = iter(done.stdout.splitlines())
    for expected in block.expected:  # in order, each on a line of its own
        assert any(line == expected for line in lines), (
            f"{block.where} should print {expected!r}; it printed:\n{done.stdout}"
        )


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")


def test_the_readmes_links_lead_somewhere() -> None:
    """mkdocs --strict checks the manual's links (make docs); the README is not in the manual,
    so its links to local files are checked here."""
    targets = [t for t in _LINK.findall(README.read_text()) if "://" not in t]
    assert targets
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
