"""What the env checker reports: one line per failure, naming the rule and the field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openenv.exceptions import OpenEnvError

__all__ = ["EnvCheckError", "Failure"]


@dataclass(frozen=True)
class Failure:
    """One broken rule: ``str(failure)`` is the line ``rule: subject: detail``.

    Attributes:
        rule: the rule's name (see :data:`openenv.testing.RULES`).
        subject: what broke it, as precisely as known: ``DemoObservation.score``,
            ``DemoEnvironment.step``.
        detail: what is wrong and, where it is not obvious, what to do.
    """

    rule: str
    subject: str
    detail: str

    def __str__(self) -> str:
        # One line, whatever a library's message looked like.
        return " ".join(f"{self.rule}: {self.subject}: {self.detail}".split())


class EnvCheckError(OpenEnvError, AssertionError):
    """An env broke rules of :func:`openenv.testing.check_env`; one line per failure.

    It is an ``AssertionError`` too, so test runners report it as a failed check.

    Attributes:
        failures: every broken rule, in the order checked.
    """

    def __init__(self, failures: Sequence[Failure]) -> None:
        super().__init__("\n".join(str(failure) for failure in failures))
        self.failures = list(failures)
