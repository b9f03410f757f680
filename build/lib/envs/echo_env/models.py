"""The echo environment's action and observation."""

from __future__ import annotations

from openenv.types import Action, Observation

__all__ = ["EchoAction", "EchoObservation"]


class EchoAction(Action):
    """A message to echo back."""

    message: str


class EchoObservation(Observation):
    """The echoed message and its length; the reward is ``len(message) / 10``."""

    echoed_message: str
    message_length: int = 0
