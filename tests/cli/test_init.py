"""``openenv init``: the scaffold validates, serves, runs in a pool, passes its own test and
builds into an image, untouched; names and existing paths are refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openenv import EnvPool, LocalProcessProvider

OPENENV = [sys.executable, "-m", "openenv"]
ROOT = Path(__file__).parents[2]


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPENENV, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Any]:
    """``openenv init demo_env`` in a temp dir; yields the imported package, and forgets it
    afterwards (another test makes another ``demo_env``)."""
    done = run("init", "demo_env", "--dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        import demo_env

        yield demo_env
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == "demo_env"]:
            del sys.modules[name]


def test_init_prints_what_it_made(tmp_path: Path) -> None:
    done = run("init", "demo_env", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"created {tmp_path}/demo_env/",
        "  demo_env/README.md",
        "  demo_env/__init__.py",
        "  demo_env/client.py",
        "  demo_env/models.py",
        "  demo_env/server/Dockerfile",
        "  demo_env/server/__init__.py",
        "  demo_env/server/app.py",
        "  demo_env/server/demo_environment.py",
        "  demo_env/tests/__init__.py",
        "  demo_env/tests/test_env.py",
        f"next: openenv validate demo_env && openenv serve demo_env (run from {tmp_path})",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name != "demo_env"]  # no staging left


def test_init_validate_serve_and_a_real_session(demo: Any, tmp_path: Path) -> None:
    done = run("validate", "demo_env", cwd=tmp_path)
    assert (done.returncode, done.stdout.splitlines()[0]) == (
        0,
        "demo_env: DemoEnvironment keeps all 16 rules (10 steps)",
    ), done.stdout + done.stderr
    server = subprocess.Popen(
        [*OPENENV, "serve", "demo_env", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # blocks until it serves (or exits: then "")
        assert line.startswith("openenv: serving on ws://127.0.0.1:"), line
        with demo.DemoEnv(line.split()[-1]) as env:
            assert env.reset(seed=7).observation.attempts_left == 10
            result = env.step(demo.DemoAction(guess=50))
            assert result.observation.hint in ("higher", "lower", "correct")
            assert env.state().attempts_left == 9
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_the_scaffold_runs_in_an_env_pool(demo: Any) -> None:
    provider = LocalProcessProvider(demo.AsyncDemoEnv.server_app)
    async with EnvPool(demo.AsyncDemoEnv, provider, size=4, sessions_per_server=2) as pool:
        first = await pool.reset(seed=3)
        assert [r.observation.attempts_left for r in first] == [10] * 4
        results = await pool.step([demo.DemoAction(guess=g) for g in (0, 33, 66, 99)])
        assert all(r.observation.hint for r in results)


def test_the_scaffolds_own_test_passes(demo: Any, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "demo_env"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 passed" in done.stdout


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Demo-Env",
            "openenv init: 'Demo-Env' is not a valid env name: use a lowercase Python identifier "
            "such as demo_env (letters, digits, underscores; it names a package and an image)",
        ),
        (
            "class",
            "openenv init: 'class' is not a valid env name: use a lowercase Python identifier "
            "such as demo_env (letters, digits, underscores; it names a package and an image)",
        ),
        (
            "json",
            "openenv init: 'json' would shadow the Python module of that name; choose another",
        ),
    ],
)
def test_init_refuses_bad_names(tmp_path: Path, name: str, message: str) -> None:
    done = run("init", name, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n")
    assert list(tmp_path.iterdir()) == []


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "demo_env").mkdir()
    (tmp_path / "demo_env" / "mine.py").write_text("keep me")
    done = run("init", "demo_env", "--dir", str(tmp_path), cwd=ROOT)
    assert (done.returncode, done.stderr) == (
        2,
        f"openenv init: {tmp_path}/demo_env already exists; refusing to overwrite it\n",
    )
    assert [p.name for p in (tmp_path / "demo_env").iterdir()] == ["mine.py"]


@pytest.mark.timeout(180)
def test_the_templates_ship_in_the_wheel(tmp_path: Path) -> None:
    done = subprocess.run(
        [*OPENENV[:2], "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("openenv_rl-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    templates = ROOT / "openenv" / "scaffold" / "templates"
    expected = {
        f"openenv/scaffold/{p.relative_to(templates.parent)}" for p in templates.rglob("*.tmpl")
    }
    assert len(expected) == 10 and expected <= shipped


def test_every_build_stage_but_the_last_carries_the_build_label(demo: Any) -> None:
    # openenv build removes the stages it leaves untagged by this label; a stage without it
    # stays behind as a <none> image (223 MB for the scaffold's) after every build.
    dockerfiles = [Path(demo.__file__).parent / "server" / "Dockerfile"]
    dockerfiles += sorted((ROOT / "envs").glob("*/server/Dockerfile"))
    for dockerfile in dockerfiles:
        stages = dockerfile.read_text().split("\nFROM ")[1:]
        assert len(stages) > 1, dockerfile
        for stage in stages[:-1]:
            assert "LABEL openenv.build=${OPENENV_BUILD}" in stage, (dockerfile, stage)


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("docker_images")
async def test_openenv_build_makes_an_image_that_serves(demo: Any, tmp_path: Path) -> None:
    tag = f"demo-env:test-{uuid.uuid4().hex[:12]}"
    has_base = subprocess.run(
        ["docker", "image", "inspect", "openenv-base:bookworm"], capture_output=True
    )
    base = "openenv-base:bookworm" if has_base.returncode == 0 else "python:3.11-slim"
    try:
        done = run(
            "build", "demo_env", "--tag", tag, "--base-image", base, cwd=tmp_path, timeout=580
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith(f"built {tag}: ")
        async with await demo.AsyncDemoEnv.from_docker_image(tag) as env:
            assert (await env.reset(seed=7)).observation.attempts_left == 10
            result = await env.step(demo.DemoAction(guess=50))
            assert result.observation.hint in ("higher", "lower", "correct")
        # A rebuild after a change removes the image the tag named before (no <none> left).
        first = image_id(tag)
        readme = tmp_path / "demo_env" / "README.md"
        readme.write_text(readme.read_text() + "\nchanged\n")
        done = run(
            "build", "demo_env", "--tag", tag, "--base-image", base, cwd=tmp_path, timeout=580
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert image_id(tag) not in (None, first)
        assert image_id(first) is None, "the replaced image was left behind"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


def image_id(image: str | None) -> str | None:
    inspected = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", str(image)], capture_output=True, text=True
    )
    return inspected.stdout.strip() if inspected.returncode == 0 else None


def test_envs_placed_in_the_repo_work_too(tmp_path: Path) -> None:
    # In a package tree (like envs/), the scaffold imports relatively and still validates.
    (tmp_path / "myenvs").mkdir()
    (tmp_path / "myenvs" / "__init__.py").write_text("")
    assert run("init", "maze", "--dir", str(tmp_path / "myenvs"), cwd=tmp_path).returncode == 0
    done = run("validate", "myenvs/maze", cwd=tmp_path)
    assert done.stdout.startswith("myenvs/maze: MazeEnvironment keeps all 16 rules"), done.stdout
    assert os.path.isfile(tmp_path / "myenvs" / "maze" / "server" / "maze_environment.py")


def test_the_scaffold_passes_gymnasiums_checker(demo: Any) -> None:
    import warnings

    from gymnasium import spaces
    from gymnasium.utils.env_checker import check_env as gymnasium_check_env

    from openenv.gym import make_env

    env = make_env(demo.DemoEnv)
    try:
        assert env.action_space == spaces.Dict({"guess": spaces.Discrete(100)})  # from the bounds
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gymnasium_check_env(env, skip_render_check=True, skip_close_check=True)  # no spec
    finally:
        env.close()


def test_init_into_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    done = run("init", "demo_env", "--dir", str(tmp_path / "taken"), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        2,
        f"openenv init: cannot create {tmp_path}/taken/demo_env: File exists\n",
    )


def test_init_tools_makes_a_tool_env_that_validates_and_passes_its_tests(tmp_path: Path) -> None:
    done = run("init", "quiz_env", "--tools", "--dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "quiz_env" / "server" / "quiz_environment.py").read_text()
    assert "@tool\n    def guess(self, number: int) -> QuizObservation:" in source
    checked = run("validate", "quiz_env", cwd=tmp_path)
    assert checked.stdout.startswith("quiz_env: QuizEnvironment keeps all 16 rules"), checked
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "quiz_env"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "3 passed" in tested.stdout, tested.stdout[-3000:]
