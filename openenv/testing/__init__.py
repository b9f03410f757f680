"""Tools for env authors: :func:`check_env`, the checker ``openenv validate`` runs.

Every rule, what it means and the line it prints when broken (``rule: subject: detail``):

- ``import``: the env package (or module) imports, and holds an app made by ``create_app``
  (``server.app:app``) or exactly one ``Environment`` subclass.
- ``types``: ``action_type``/``observation_type``/``state_type`` subclass ``Action``/
  ``Observation``/``State``.
- ``schema``: msgspec makes a JSON Schema of each (the server's greeting carries them).
- ``evolution``: the fields an env adds may be required only up to its first field with a
  default; every field after that needs a default, so peers of different versions decode each
  other's messages. ``forbid_unknown_fields`` is refused for the same reason.
- ``init``: the env can be constructed as its app constructs it.
- ``reset``: returns the observation type, never ``done=True``; does not raise.
- ``step``: returns the observation type; does not raise on a valid action.
- ``state``: returns the state type; ``episode_id`` is the one given to ``reset``;
  ``step_count`` is 0 after reset and counts steps.
- ``round-trip``: observations and states come back equal through msgpack and JSON, and reset,
  step and state work over both kinds of frame.
- ``done``: once an observation says ``done``, a further step returns ``done`` again or raises
  (the client gets ``env_error``): an episode stays over until ``reset``, which starts a new one.
- ``blocking``: a ``reset``/``step`` that holds the event loop on every call (0.05 s by
  default) needs ``blocking = True`` on the env (or ``async def``).
- ``close``: ``close()`` does not raise.
- ``not_reset``: step and state before the first reset get a ``not_reset`` error.
- ``isolation``: two sessions never see each other's episode (no shared class attributes or
  module globals).
- ``determinism``: an env declaring ``deterministic = True`` gives two sessions reset with the
  same seed and sent the same actions equal observations.
"""

from openenv.testing.checker import RULES, CheckReport, check_env
from openenv.testing.failures import EnvCheckError, Failure

__all__ = ["RULES", "CheckReport", "EnvCheckError", "Failure", "check_env"]
