"""Coding environment: runs Python snippets in smolagents' interpreter, one worker per session."""

from envs.coding_env.client import AsyncCodingEnv, CodingEnv
from envs.coding_env.models import CodeAction, CodeObservation, CodeState

__all__ = [
    "AsyncCodingEnv",
    "CodeAction",
    "CodeObservation",
    "CodeState",
    "CodingEnv",
    "sample_action",
]


def sample_action(size: int) -> CodeAction:
    """A cheap program about ``size`` bytes long, for ``openenv bench --env coding``."""
    return CodeAction(code="print(1)" + (" #" + "x" * (size - 10) if size > 10 else ""))
