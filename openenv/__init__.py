"""openenv: isolated, containerised environments for agentic RL.

Environments run server-side and speak ``reset`` / ``step`` / ``state`` over one WebSocket per
session. This package holds the client SDK (importable without any server dependency), the
server base class (``openenv.server``) and the providers that run servers.
"""

from openenv.client import AsyncEnvClient, BatchError, EnvClient, EnvPool, Episode, PoolStats
from openenv.endpoint import Endpoint
from openenv.exceptions import (
    AuthenticationError,
    CapacityError,
    ConnectError,
    ConnectionLostError,
    EnvError,
    EnvTimeoutError,
    InvalidActionError,
    InvalidMessageError,
    NotResetError,
    OpenEnvError,
    PoolError,
    ProtocolError,
    ProviderError,
    RemoteError,
    ServerTimeoutError,
    VersionMismatchError,
)
from openenv.providers import LocalProcessProvider, Provider, ServerHandle
from openenv.types import Action, Observation, State, StepResult

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AsyncEnvClient",
    "AuthenticationError",
    "BatchError",
    "CapacityError",
    "ConnectError",
    "ConnectionLostError",
    "Endpoint",
    "EnvClient",
    "EnvError",
    "EnvPool",
    "EnvTimeoutError",
    "Episode",
    "InvalidActionError",
    "InvalidMessageError",
    "LocalProcessProvider",
    "NotResetError",
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
