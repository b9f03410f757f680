"""Every bundled task of the terminal env: its reference solution scores 1.0 and doing nothing
scores 0.0, on a real local server (the same on the container: test_terminal_env_docker.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from envs.terminal_env import AsyncTerminalEnv, Evaluate, Exec
from envs.terminal_env.server.tasks import TASKS_DIR, Task, load_task, task_names
from openenv.exceptions import EnvError
from openenv.providers import LocalProcessProvider

module_loop = pytest.mark.asyncio(loop_scope="module")
pytestmark = pytest.mark.timeout(120)
TASKS = task_names()


def solution(name: str) -> str:
    return (TASKS_DIR / name / "solution.sh").read_text()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def endpoint() -> AsyncIterator[object]:
    provider = LocalProcessProvider("envs.terminal_env")
    try:
        yield (await provider.start()).endpoint
    finally:
        await provider.close()


async def score(endpoint: object, task: object, commands: str | None) -> tuple[float, Path]:
    async with AsyncTerminalEnv(endpoint) as env:  # type: ignore[arg-type]
        first = await env.reset(task=task)
        assert first.observation.instruction
        workspace = Path((await env.state()).workspace)
        if commands is not None:
            ran = (await env.step(Exec(commands, timeout_s=60))).observation
            assert ran.exit_code == 0, ran.stderr
        graded = (await env.step(Evaluate())).observation
        assert graded.done and graded.tests is not None
        assert graded.reward is not None
        await env.reset()  # the next episode starts from nothing left by this one
        return graded.reward, workspace


def test_there_are_five_tasks_or_more() -> None:
    assert len(TASKS) >= 5
    for name in TASKS:
        assert (TASKS_DIR / name / "solution.sh").is_file()
        load_task(name)


@pytest.mark.parametrize("name", TASKS)
@module_loop
async def test_the_reference_solution_scores_one(endpoint: object, name: str) -> None:
    reward, workspace = await score(endpoint, name, solution(name))
    assert reward == 1.0
    assert not workspace.exists()


@pytest.mark.parametrize("name", TASKS)
@module_loop
async def test_doing_nothing_scores_zero(endpoint: object, name: str) -> None:
    reward, _ = await score(endpoint, name, None)
    assert reward == 0.0


@module_loop
async def test_pytest_tasks_score_the_fraction_passed(endpoint: object) -> None:
    half_fixed = solution("fix_failing_test").replace("total += quantity", "total = quantity")
    reward, _ = await score(endpoint, "fix_failing_test", half_fixed)
    assert reward == pytest.approx(2 / 3)


@module_loop
async def test_tasks_by_index_and_inline(endpoint: object) -> None:
    async with AsyncTerminalEnv(endpoint) as env:  # type: ignore[arg-type]
        first = await env.reset(task=TASKS.index("count_errors"))
        assert "ERROR" in first.observation.instruction
        inline = {
            "instruction": "Create done.txt.",
            "files": {"readme.txt": b"hi"},
            "setup": "echo set > set.txt",
            "test": "test -f done.txt && test -f set.txt",
        }
        await env.reset(task=inline)
        await env.step(Exec("cat readme.txt set.txt && touch done.txt"))
        graded = await env.step(Evaluate())
        assert graded.reward == 1.0 and graded.done
        again = (await env.step(Evaluate())).observation
        assert "evaluated already" in again.error
        with pytest.raises(EnvError, match="not a task"):
            await env.reset(task={"instruction": 3})
        with pytest.raises(EnvError, match="set-up of task"):
            await env.reset(task={"instruction": "x", "setup": "exit 4", "test": "true"})


def test_task_paths_stay_inside() -> None:
    with pytest.raises(ValueError, match="not a relative path"):
        Task(instruction="x", test="true", files={"../escape": b""})
