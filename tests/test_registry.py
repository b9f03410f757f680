"""One registry finds every env: each way of naming an env gives one EnvSpec with one image
rule, a spec's name finds it again in another process, and a scheme registered as an entry
point (as ``gym:<id>`` is) is served by ``openenv serve`` with no special case anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv, EchoObservation
from openenv.exceptions import EnvNotFoundError
from openenv.registry import EnvSpec, image_name, resolve

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "target", ["echo", "envs.echo_env", "envs/echo_env", str(ROOT / "envs" / "echo_env")]
)
def test_every_form_of_a_name_gives_the_same_env(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    spec = resolve(target)
    assert (spec.module, spec.image, spec.app) == ("envs.echo_env", "echo-env:latest", None)
    assert spec.client() is AsyncEchoEnv
    assert (spec.action_type, spec.observation_type) == (EchoAction, EchoObservation)
    assert spec.directory() == ROOT / "envs" / "echo_env"
    assert type(spec.load_app()).__name__ == "_EnvApp"


def test_an_app_by_module_and_attribute() -> None:
    spec = resolve("tests.gym.countdown:app")
    assert (spec.module, spec.image) == ("tests.gym.countdown", "countdown:latest")
    from tests.gym.countdown import app

    assert spec.load_app() is app
    with pytest.raises(EnvNotFoundError, match="has no attribute 'nope'"):
        resolve("tests.gym.countdown:nope").load_app()


def test_one_image_rule() -> None:
    assert image_name("envs.echo_env") == "echo-env:latest"
    assert image_name("/a/b/Demo_Env/") == "demo-env:latest"  # Docker wants lower case
    assert image_name("demo_env") == "demo-env:latest"


def test_a_spec_name_finds_it_again_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory is named by its absolute path, so a server started elsewhere finds it.
    monkeypatch.chdir(ROOT)
    spec = resolve("envs/echo_env")
    assert spec.name == str(ROOT / "envs" / "echo_env")
    code = f"from openenv.registry import resolve; print(resolve({spec.name!r}).image)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == spec.image, done.stderr


def test_a_directory_that_imports_already_leaves_sys_path_alone() -> None:
    # The checkout on sys.path would shadow the installed metadata with its egg-info.
    code = (
        "import sys; from openenv.registry import resolve; spec = resolve('envs/echo_env'); "
        f"print(spec.image, {str(ROOT)!r} in sys.path)"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["echo-env:latest", "False"], done.stderr


def test_unknown_names_and_missing_dependencies_are_told_apart(tmp_path: Path) -> None:
    with pytest.raises(EnvNotFoundError, match=r"no env 'nope_env'.*registered name: .*echo"):
        resolve("nope_env")
    with pytest.raises(EnvNotFoundError, match=r"no env 'nope\.pkg'"):
        resolve("nope.pkg")
    broken = tmp_path / "broken_env"
    broken.mkdir()
    (broken / "__init__.py").write_text("import not_installed_anywhere\n")
    with pytest.raises(EnvNotFoundError, match="imports 'not_installed_anywhere'"):
        resolve(str(broken)).import_module()


def test_a_package_env_takes_no_options() -> None:
    spec = EnvSpec("echo", "envs.echo_env", "echo-env:latest", options={"size": 3})
    with pytest.raises(ValueError, match="takes no options"):
        spec.load_app()


SCHEME = '''
from dataclasses import dataclass
from typing import Any

from openenv.registry import EnvSpec


@dataclass(frozen=True)
class PrefixSpec(EnvSpec):
    """An echo env whose name carries an option: what a gym:<id> scheme does with its id."""

    def load_app(self) -> Any:
        from envs.echo_env.server.echo_environment import EchoEnvironment
        from openenv.server import create_app

        assert dict(self.options) == {"prefix": self.name.partition(":")[2]}
        return create_app(EchoEnvironment)


def spec_of(rest: str) -> EnvSpec:
    return PrefixSpec(f"demo:{rest}", "envs.echo_env", "demo-env:latest", options={"prefix": rest})
'''


def test_a_scheme_plugs_in_through_an_entry_point(tmp_path: Path) -> None:
    (tmp_path / "demo_scheme.py").write_text(textwrap.dedent(SCHEME))
    info = tmp_path / "demo_scheme-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-scheme\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[openenv.env_schemes]\ndemo = demo_scheme:spec_of\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    code = (
        "import json; from openenv.registry import resolve; s = resolve('demo:hi'); "
        "print(json.dumps([s.name, s.image, dict(s.options)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert json.loads(done.stdout) == ["demo:hi", "demo-env:latest", {"prefix": "hi"}], done.stderr
    # openenv serve takes it like any name: the registry is the only place that knows schemes.
    server = subprocess.Popen(
        [sys.executable, "-m", "openenv", "serve", "demo:hi", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("openenv: serving on "), server.communicate(timeout=10)
        with EchoEnv(line.split()[-1]) as client:
            client.reset()
            assert client.step(EchoAction(message="via a scheme")).observation.echoed_message == (
                "via a scheme"
            )
    finally:
        server.kill()
        server.communicate(timeout=10)
