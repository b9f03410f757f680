"""openenv: isolated, containerised environments for agentic RL.

Environments run server-side and speak ``reset`` / ``step`` / ``state`` over one WebSocket per
session. This package holds the client SDK (importable without any server dependency), the
server base class (``openenv.server``) and the providers that run servers.

Public names are imported on first use, so that ``import openenv.server`` in an env container
does not pay for the client side (a tenth of a second of every container's start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Action": "openenv.types",
    "ActionTypeError": "openenv.exceptions",
    "AddressError": "openenv.exceptions",
    "AsyncEnv": "openenv.launch",
    "AsyncEnvClient": "openenv.client",
    "AuthenticationError": "openenv.exceptions",
    "BatchError": "openenv.launch",
    "CapacityError": "openenv.exceptions",
    "ConnectError": "openenv.exceptions",
    "ConnectionLostError": "openenv.exceptions",
    "Endpoint": "openenv.endpoint",
    "EndpointProvider": "openenv.providers",
    "Env": "openenv.launch",
    "EnvClient": "openenv.client",
    "EnvError": "openenv.exceptions",
    "EnvMismatchError": "openenv.exceptions",
    "EnvPool": "openenv.launch",
    "EnvTimeoutError": "openenv.exceptions",
    "Episode": "openenv.launch",
    "ErrorCode": "openenv.exceptions",
    "InheritedSessionError": "openenv.exceptions",
    "InvalidActionError": "openenv.exceptions",
    "InvalidMessageError": "openenv.exceptions",
    "LocalProcessProvider": "openenv.providers",
    "NotResetError": "openenv.exceptions",
    "NotSupportedError": "openenv.exceptions",
    "Observation": "openenv.types",
    "OpenEnvError": "openenv.exceptions",
    "PoolError": "openenv.exceptions",
    "PoolStats": "openenv.launch",
    "ProtocolError": "openenv.exceptions",
    "Provider": "openenv.providers",
    "ProviderError": "openenv.exceptions",
    "RemoteError": "openenv.exceptions",
    "ServerHandle": "openenv.providers",
    "ServerTimeoutError": "openenv.exceptions",
    "State": "openenv.types",
    "StepResult": "openenv.types",
    "VersionMismatchError": "openenv.exceptions",
}

__all__ = [
    "Action",
    "ActionTypeError",
    "AddressError",
    "AsyncEnv",
    "AsyncEnvClient",
    "AuthenticationError",
    "BatchError",
    "CapacityError",
    "ConnectError",
    "ConnectionLostError",
    "Endpoint",
    "EndpointProvider",
    "Env",
    "EnvClient",
    "EnvError",
    "EnvMismatchError",
    "EnvPool",
    "EnvTimeoutError",
    "Episode",
    "ErrorCode",
    "InheritedSessionError",
    "InvalidActionError",
    "InvalidMessageError",
    "LocalProcessProvider",
    "NotResetError",
    "NotSupportedError",
    "Observation",
    "OpenEnvError",
    "PoolError",
    "PoolStats",
    "ProtocolError",
    "Provider",
    "ProviderError",
    "RemoteError",
    "ServerHandle",
    "ServerTimeoutError",
    "State",
    "StepResult",
    "VersionMismatchError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'openenv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from openenv.client import AsyncEnvClient, EnvClient
    from openenv.endpoint import Endpoint
    from openenv.exceptions import (
        ActionTypeError,
        AddressError,
        AuthenticationError,
        CapacityError,
        ConnectError,
        ConnectionLostError,
        EnvError,
        EnvMismatchError,
        EnvTimeoutError,
        ErrorCode,
        InheritedSessionError,
        InvalidActionError,
        InvalidMessageError,
        NotResetError,
        NotSupportedError,
        OpenEnvError,
        PoolError,
        ProtocolError,
        ProviderError,
        RemoteError,
        ServerTimeoutError,
        VersionMismatchError,
    )
    from openenv.launch import AsyncEnv, BatchError, Env, EnvPool, Episode, PoolStats
    from openenv.providers import EndpointProvider, LocalProcessProvider, Provider, ServerHandle
    from openenv.types import Action, Observation, State, StepResult
