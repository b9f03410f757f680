"""Coding environment: runs Python snippets in smolagents' interpreter, one worker per session."""

from envs.coding_env.client import AsyncCodingEnv, CodingEnv
from envs.coding_env.models import CodeAction, CodeObservation, CodeState

__all__ = ["AsyncCodingEnv", "CodeAction", "CodeObservation", "CodeState", "CodingEnv"]
