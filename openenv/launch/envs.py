"""Clients that start their own server: ``AsyncEchoEnv.from_process()``,
``EchoEnv.from_docker_image("echo-env:latest")``.

Each env ships one async and one sync class built on these (see ``envs/echo_env/client.py``).
The server a constructor starts belongs to the client: closing the client stops it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, Unpack

from openenv.cleanup import exit_on_sigterm
from openenv.client.async_client import AsyncEnvClient
from openenv.client.portal import run_sync
from openenv.client.sync_client import EnvClient
from openenv.providers.base import Provider
from openenv.types import Action, Observation, State

if TYPE_CHECKING:  # the Docker provider (and aiodocker) load only when a container is wanted
    from openenv.providers.docker import DockerOptions

__all__ = ["AsyncEnv", "Env", "open_client"]

ActT = TypeVar("ActT", bound=Action)
ObsT = TypeVar("ObsT", bound=Observation)
StateT = TypeVar("StateT", bound=State)
ClientT = TypeVar("ClientT", bound=AsyncEnvClient[Any, Any, Any])
AsyncEnvT = TypeVar("AsyncEnvT", bound="AsyncEnv[Any, Any, Any]")
EnvT = TypeVar("EnvT", bound="Env[Any, Any, Any]")


async def open_client(
    provider: Provider, client_cls: type[ClientT], **client_options: Any
) -> ClientT:
    """Start one server on ``provider`` and return a connected ``client_cls`` session that owns
    the provider: closing the client closes the provider, and with it the server."""
    try:
        server = await provider.start()
        client = client_cls(server.endpoint, on_close=provider.close, **client_options)
        await client.connect()
    except BaseException:
        await provider.close()
        raise
    return client


class AsyncEnv(AsyncEnvClient[ActT, ObsT, StateT]):
    """An :class:`AsyncEnvClient` that can start its env's server itself.

    Attributes:
        server_app: the env package ``openenv serve`` serves for :meth:`from_process`, e.g.
            ``"envs.echo_env"``.
    """

    server_app: ClassVar[str | None] = None

    @classmethod
    async def from_provider(
        cls: type[AsyncEnvT], provider: Provider, **client_options: Any
    ) -> AsyncEnvT:
        """Start a server on ``provider`` and connect; the provider closes with the client."""
        return await open_client(provider, cls, **client_options)

    @classmethod
    async def from_process(
        cls: type[AsyncEnvT],
        *,
        transport: Literal["unix", "tcp"] = "unix",
        env: dict[str, str] | None = None,
        auth: bool = True,
        startup_timeout: float = 30.0,
    ) -> AsyncEnvT:
        """Start this env's server as a local subprocess (no isolation) and connect to it.

        The arguments are :class:`~openenv.providers.LocalProcessProvider`'s.
        """
        provider = _process_provider(cls, transport, env, auth, startup_timeout)
        return await open_client(provider, cls)

    @classmethod
    async def from_docker_image(
        cls: type[AsyncEnvT], image: str, **options: Unpack[DockerOptions]
    ) -> AsyncEnvT:
        """Start a container of ``image`` and connect to it; it is removed when the client
        closes. ``options`` are :class:`~openenv.providers.docker.LocalDockerProvider`'s
        (typed by :class:`~openenv.providers.docker.DockerOptions`: ``transport``,
        ``network``, ``env``, ``memory``, ``cpus``, ``pids``, ``scratch_size``,
        ``scratch_exec``, ``user``, ``read_only``, ``auth``, ``startup_timeout``, …)."""
        from openenv.providers.docker import LocalDockerProvider

        return await open_client(LocalDockerProvider(image, **options), cls)

    @classmethod
    def _require_app(cls) -> str:
        if cls.server_app is None:
            raise TypeError(f"{cls.__name__} names no server_app to start; pass an endpoint")
        return cls.server_app


class Env(EnvClient[ActT, ObsT, StateT]):
    """The sync twin of :class:`AsyncEnv`: ``async_client`` names the env's :class:`AsyncEnv`."""

    async_client: ClassVar[type[AsyncEnv[Any, Any, Any]]] = AsyncEnv

    @classmethod
    def from_provider(cls: type[EnvT], provider: Provider, **client_options: Any) -> EnvT:
        """Start a server on ``provider`` and connect; the provider closes with the client
        (see :meth:`AsyncEnv.from_provider`). Starting and stopping run on the process's
        client loop (``openenv.client.portal``); the session itself needs none."""
        if provider.handle_sigterm:
            exit_on_sigterm()  # here: the loop's thread cannot install a signal handler
        try:
            server = run_sync(provider.start())
            client = cls(server.endpoint, on_close=provider.close, **client_options)
            client.connect()
        except BaseException:
            run_sync(provider.close())
            raise
        return client

    @classmethod
    def from_process(
        cls: type[EnvT],
        *,
        transport: Literal["unix", "tcp"] = "unix",
        env: dict[str, str] | None = None,
        auth: bool = True,
        startup_timeout: float = 30.0,
    ) -> EnvT:
        """Start this env's server as a local subprocess; see :meth:`AsyncEnv.from_process`."""
        provider = _process_provider(cls.async_client, transport, env, auth, startup_timeout)
        return cls.from_provider(provider)

    @classmethod
    def from_docker_image(cls: type[EnvT], image: str, **options: Unpack[DockerOptions]) -> EnvT:
        """Start a container of ``image``; see :meth:`AsyncEnv.from_docker_image`."""
        from openenv.providers.docker import LocalDockerProvider

        return cls.from_provider(LocalDockerProvider(image, **options))


def _process_provider(
    client_cls: type[AsyncEnv[Any, Any, Any]],
    transport: Literal["unix", "tcp"],
    env: dict[str, str] | None,
    auth: bool,
    startup_timeout: float,
) -> Provider:
    """The local process provider of ``client_cls``'s env (its ``server_app``)."""
    from openenv.providers.process import LocalProcessProvider

    return LocalProcessProvider(
        client_cls._require_app(),
        transport=transport,
        env=env,
        auth=auth,
        startup_timeout=startup_timeout,
    )
