"""Rules about an env's declared types, checked without running it: ``types``, ``schema``,
``evolution``."""

from __future__ import annotations

from typing import Any

import msgspec

from openenv.server.environment import Environment
from openenv.testing.failures import Failure
from openenv.types import Action, Observation, State

__all__ = ["check_types"]

_BASES: dict[str, type[msgspec.Struct]] = {
    "action_type": Action,
    "observation_type": Observation,
    "state_type": State,
}


def check_types(env_cls: type[Environment[Any, Any, Any]]) -> list[Failure]:
    """``types``, then (for the types that are right) ``schema`` and ``evolution``."""
    failures = []
    for attribute, base in _BASES.items():
        declared = getattr(env_cls, attribute, None)
        if not (isinstance(declared, type) and issubclass(declared, base)):
            shown = declared.__name__ if isinstance(declared, type) else repr(declared)
            failures.append(
                Failure(
                    "types",
                    f"{env_cls.__name__}.{attribute}",
                    f"{shown} is not a subclass of openenv.types.{base.__name__}",
                )
            )
            continue
        failures += _schema(declared) or _evolution(declared, base)
    return failures


def _schema(struct: type[msgspec.Struct]) -> list[Failure]:
    """``schema``: msgspec makes the JSON Schema the server's greeting carries."""
    try:
        msgspec.json.schema(struct)
    except (TypeError, ValueError) as whole:
        for field in msgspec.structs.fields(struct):
            try:
                msgspec.json.schema(field.type)
            except (TypeError, ValueError) as exc:
                reason = str(exc).strip().splitlines()[-1]  # msgspec's last line says why
                detail = f"no JSON Schema for its type ({reason})"
                return [Failure("schema", f"{struct.__name__}.{field.name}", detail)]
        return [Failure("schema", struct.__name__, f"no JSON Schema ({whole})")]
    return []


def _evolution(struct: type[msgspec.Struct], base: type[msgspec.Struct]) -> list[Failure]:
    """``evolution``: peers of different versions keep decoding each other's messages.

    The fields an env adds to the base type are read in declaration order (parents first).
    Required fields must all come before the first field with a default: those are the first
    version's fields. Any field after it was added later, and must have a default so that a
    message from a peer without it still decodes. Unknown fields must not be forbidden, or an
    older peer refuses a newer one's messages.
    """
    failures = []
    if struct.__struct_config__.forbid_unknown_fields:
        detail = "forbid_unknown_fields=True makes older peers refuse messages with new fields"
        failures.append(Failure("evolution", struct.__name__, detail))
    inherited = {field.name for field in msgspec.structs.fields(base)}
    seen_default: str | None = None
    for field in msgspec.structs.fields(struct):
        if field.name in inherited:
            continue
        has_default = (
            field.default is not msgspec.NODEFAULT or field.default_factory is not msgspec.NODEFAULT
        )
        if has_default:
            seen_default = seen_default or field.name
        elif seen_default is not None:
            detail = (
                f"required, but declared after {seen_default!r}, which has a default: a field "
                "added after the first version needs a default"
            )
            failures.append(Failure("evolution", f"{struct.__name__}.{field.name}", detail))
    return failures
