"""``openenv validate``: one line per broken rule and exit code 1; a summary when all pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

BROKEN_MODELS = """
from openenv.types import Action, Observation


class BrokenAction(Action, forbid_unknown_fields=True):
    n: int


class BrokenObservation(Observation, kw_only=True):
    value: int = 0
    extra: int
"""

BROKEN_APP = """
from openenv.server import Environment, create_app
from openenv.types import State

from ..models import BrokenAction, BrokenObservation


class BrokenEnvironment(Environment[BrokenAction, BrokenObservation, State]):
    def reset(self, seed=None, episode_id=None, **options):
        return BrokenObservation(extra=0)

    def step(self, action):
        return BrokenObservation(extra=0)

    @property
    def state(self):
        return State()


app = create_app(BrokenEnvironment)
"""


def validate(target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openenv", "validate", target],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_broken_env_gets_one_line_per_rule(tmp_path: Path) -> None:
    package = tmp_path / "broken_env"
    (package / "server").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "server" / "__init__.py").write_text("")
    (package / "models.py").write_text(BROKEN_MODELS)
    (package / "server" / "app.py").write_text(BROKEN_APP)
    done = validate(str(package), cwd=ROOT)  # a directory, from anywhere
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "evolution: BrokenAction: forbid_unknown_fields=True makes older peers refuse messages "
        "with new fields",
        "evolution: BrokenObservation.extra: required, but declared after 'value', which has a "
        "default: a field added after the first version needs a default",
    ]
    assert done.stderr == f"{package}: 1 of 16 rules broken\n"


def test_the_echo_env_passes(tmp_path: Path) -> None:
    done = validate("envs.echo_env", cwd=ROOT)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "envs.echo_env: EchoEnvironment keeps all 16 rules (32 steps)",
        "  note: done: no episode ended within 32 step(s); not checked",
    ]


def test_no_env_by_that_name_is_a_usage_error(tmp_path: Path) -> None:
    done = validate("no_such_env", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")  # as for serve, build and bench
    assert done.stderr.startswith(
        "openenv validate: no env 'no_such_env': no module named 'no_such_env' (give an env "
        "package such as envs.echo_env, its directory, module:app, or a registered name: "
    )
    assert "echo" in done.stderr and done.stderr.count("\n") == 1


def test_an_env_whose_import_fails_is_one_line(tmp_path: Path) -> None:
    package = tmp_path / "late_env"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from openenv.types import Observation\n\n\n"
        "class LateObservation(Observation):\n"
        '    hint: str = ""\n'
        "    score: int  # added later, without a default: msgspec refuses the class\n"
    )
    done = validate("late_env", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (
        1,
        "import: late_env: importing it raised TypeError: Required field 'score' cannot follow "
        "optional fields. Either reorder the struct fields, or set `kw_only=True` in the struct "
        "definition.\n",
    )
