"""``LocalDockerProvider``: one container per env server, on the local Docker daemon (aiodocker).

The client reaches a container only through a unix socket in a bind-mounted directory (the
Linux default; the container then runs with ``--network none``) or through a port published on
127.0.0.1 (for envs that need the network, and for Docker Desktop) - never through a container's
bridge IP. Containers run sandboxed by default: a non-root user, all capabilities dropped,
no-new-privileges, a read-only root with a tmpfs scratch directory, memory, pids and CPU limits.

Nothing leaks: containers are removed by ``stop``/``close``, on errors during start-up, and at
interpreter exit (also after SIGINT/SIGTERM); each is labelled with its owner so that
``openenv prune`` removes those a SIGKILLed client left behind.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import secrets
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import aiodocker

from openenv.cleanup import exit_on_sigterm, run_to_completion
from openenv.endpoint import Endpoint, is_loopback
from openenv.exceptions import ProviderError
from openenv.providers.base import Provider, ServerHandle
from openenv.providers.listing import record_server
from openenv.providers.owners import mark_owned, owner_labels

__all__ = ["TOKEN_FILE_LABEL", "DockerOptions", "LocalDockerProvider", "parse_bytes"]

#: On an image whose server reads ``OPENENV_TOKEN_FILE`` (``openenv build`` sets it).
TOKEN_FILE_LABEL = "org.openenv.token-file"

_SOCKET_DIR = "/run/openenv"
_CONTAINER_PORT = 8000
_POLL_S = 0.01
_STATE_CHECK_EVERY = 25  # polls between container state checks (~0.25 s)
_LOG_TAIL_LINES = 30
_NOBODY = "65534:65534"


def parse_bytes(size: str | int) -> int:
    """``"512m"`` -> bytes; ints pass through."""
    if isinstance(size, int):
        return size
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = size.strip().lower().removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class DockerOptions(TypedDict, total=False):
    """The keyword options of :class:`LocalDockerProvider`, for ``from_docker_image(image,
    **options)`` (each is documented there)."""

    transport: Literal["unix", "tcp"] | None
    host: str
    network: bool | None
    env: Mapping[str, str] | None
    memory: str | int
    cpus: float
    pids: int
    scratch_size: str | None
    scratch_exec: bool | None
    user: str
    allow_root: bool
    read_only: bool
    auth: bool
    startup_timeout: float
    pool: str | None
    docker_url: str | None
    handle_sigterm: bool


@dataclass
class _Container:
    id: str
    workdir: Path


class LocalDockerProvider(Provider):
    """Starts env servers as containers of ``image``.

    Args:
        image: the env image, e.g. ``"echo-env:latest"`` (built by ``openenv build``).
        transport: ``"unix"`` (socket in a bind-mounted dir) or ``"tcp"`` (a port published
            on ``host``). Default: unix on Linux, tcp elsewhere.
        host: the host address a tcp port is published on (default 127.0.0.1; a cluster
            node's own address for clients on other machines, only with ``auth``).
        network: give the container a network. Default: only when the transport needs one.
        env: extra environment variables for the server (``OPENENV_*`` limits, env options).
        memory: memory limit (``"512m"``); swap is not allowed beyond it.
        cpus: CPU limit in cores.
        pids: process/thread limit.
        scratch_size: size of the writable tmpfs at ``/tmp`` (default: the image's
            ``org.openenv.scratch-size`` label, else 64m).
        scratch_exec: whether programs may be run from ``/tmp`` (it is ``noexec`` otherwise;
            default: the image's ``org.openenv.scratch-exec`` label, else False). An image
            whose env runs the agent's own scripts (the terminal env) sets the labels.
        user: the container user (default nobody); root is refused unless ``allow_root``.
        read_only: read-only root filesystem.
        auth: a random bearer token per container.
        startup_timeout: seconds a container may take to accept sessions.
        pool: pool id written into the labels (default: one per provider).
        docker_url: the daemon's address (default: aiodocker's discovery, e.g. DOCKER_HOST).
        handle_sigterm: make SIGTERM unwind the program like Ctrl-C (``SystemExit(143)``), so
            that ``finally`` blocks and the exit hook remove this process's containers. Done
            once, on first use, and only while SIGTERM has its default action (which would end
            the process with no clean-up at all): a handler the application installed is never
            replaced. Pass False to leave SIGTERM alone; containers then outlive a SIGTERM until
            ``openenv prune``. Every container is also removed at normal interpreter exit.
    """

    def __init__(
        self,
        image: str,
        *,
        transport: Literal["unix", "tcp"] | None = None,
        host: str = "127.0.0.1",
        network: bool | None = None,
        env: Mapping[str, str] | None = None,
        memory: str | int = "512m",
        cpus: float = 1.0,
        pids: int = 256,
        scratch_size: str | None = None,
        scratch_exec: bool | None = None,
        user: str = _NOBODY,
        allow_root: bool = False,
        read_only: bool = True,
        auth: bool = True,
        startup_timeout: float = 30.0,
        pool: str | None = None,
        docker_url: str | None = None,
        handle_sigterm: bool = True,
    ) -> None:
        transport = transport or ("unix" if sys.platform.startswith("linux") else "tcp")
        if transport not in ("unix", "tcp"):
            raise ValueError(f"transport must be 'unix' or 'tcp', not {transport!r}")
        network = transport == "tcp" if network is None else network
        if transport == "tcp" and not network:
            raise ValueError("transport='tcp' publishes a port, which needs network=True")
        if not auth and not is_loopback(host):
            raise ValueError(f"refusing to publish on {host} without a token; keep auth=True")
        if user.split(":")[0] in ("0", "root") and not allow_root:
            raise ValueError("refusing to run an env as root; pass allow_root=True to insist")
        self.image = image
        self.transport = transport
        self.host = host
        self.network = network
        self.env = dict(env or {})
        self.memory = parse_bytes(memory)
        self.cpus = cpus
        self.pids = pids
        self.scratch_size = scratch_size
        self.scratch_exec = scratch_exec
        self._labels: dict[str, str] | None = None  # the image's, read once
        self.user = user
        self.read_only = read_only
        self.auth = auth
        self.startup_timeout = startup_timeout
        self.pool = pool or uuid.uuid4().hex[:12]
        self._docker_url = docker_url
        self.handle_sigterm = handle_sigterm
        self._docker: aiodocker.Docker | None = None
        self._containers: dict[str, _Container] = {}
        self._handles: dict[str, ServerHandle] = {}
        # Creates abandoned by a cancelled start, and removals of what they created: close()
        # waits for both, so that no container comes into being after the provider closed.
        self._abandoned: set[asyncio.Future[Any]] = set()

    # Provider interface.

    async def start(self) -> ServerHandle:
        docker = self._client()
        workdir = self._make_workdir()
        token = secrets.token_urlsafe(24) if self.auth else None
        try:
            labels = await self._image_labels(docker)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        config = self._config(workdir, token, labels)
        creating = asyncio.ensure_future(docker.containers.create(config))
        try:
            container = await asyncio.shield(creating)
        except aiodocker.DockerError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ProviderError(
                f"cannot create a container of {self.image}: {exc.message}"
            ) from exc
        except asyncio.CancelledError:
            # The daemon may still carry out a create cancelled mid-request, and a container
            # whose id we never learn is leaked: remove it once it exists.
            self._abandoned.add(creating)
            creating.add_done_callback(functools.partial(self._remove_created, workdir))
            raise
        record = _Container(container.id, workdir)
        _live.add(container.id, self._docker_url, workdir)
        try:
            await container.start()
            address = await self._ready_address(container, workdir)
        except BaseException:
            await self._remove(record)
            raise
        handle = ServerHandle(container.id, Endpoint.parse(address, token))
        record_server(workdir, "docker", handle)  # for `openenv top`
        self._containers[handle.id] = record
        self._handles[handle.id] = handle
        return handle

    def _remove_created(self, workdir: Path, creating: asyncio.Future[Any]) -> None:
        self._abandoned.discard(creating)
        if creating.cancelled() or creating.exception() is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            return
        container_id = creating.result().id
        _live.add(container_id, self._docker_url, workdir)  # the exit hook's, if we are ending
        # A client of its own: the provider's may be closed by the time this runs.
        removal = asyncio.ensure_future(_force_remove({container_id: self._docker_url}))
        self._abandoned.add(removal)

        def removed(task: asyncio.Future[None]) -> None:
            self._abandoned.discard(task)
            _live.discard(container_id)
            shutil.rmtree(workdir, ignore_errors=True)

        removal.add_done_callback(removed)

    async def stop(self, server: ServerHandle) -> None:
        record = self._containers.pop(server.id, None)
        self._handles.pop(server.id, None)
        if record is not None:
            await self._remove(record)

    async def is_alive(self, server: ServerHandle) -> bool:
        if server.id not in self._containers:
            return False
        try:
            info = await self._client().containers.container(server.id).show()
        except aiodocker.DockerError:
            return False
        return bool(info["State"]["Running"])

    def running(self) -> list[ServerHandle]:
        return list(self._handles.values())

    async def kill(self, server: ServerHandle) -> None:
        try:
            await self._client().containers.container(server.id).kill()
        except aiodocker.DockerError:
            pass

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            # An abandoned create must finish on the open client (closing it under the request
            # would lose the id of a container the daemon still makes), then be removed.
            while self._abandoned:
                await run_to_completion(asyncio.gather(*self._abandoned, return_exceptions=True))
            if self._docker is not None:
                await self._docker.close()
                self._docker = None

    # Internals.

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self._docker_url)
            if self.handle_sigterm:
                exit_on_sigterm()
        return self._docker

    def _make_workdir(self) -> Path:
        # A private parent (0700) holds the directory mounted into the container, which the
        # container's user must be able to write its socket into.
        parent = Path(tempfile.mkdtemp(prefix="openenv-docker-"))
        mark_owned(parent, self.pool)  # so that `openenv prune` removes it after a SIGKILL
        shared = parent / "run"
        shared.mkdir()
        uid, _, gid = self.user.partition(":")
        try:
            os.chown(shared, int(uid), int(gid or uid))
        except (PermissionError, ValueError):
            shared.chmod(0o777)  # not root, or a named user: let anyone inside write there
        return parent

    def _write_token(self, path: Path, token: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(token)
        uid, _, gid = self.user.partition(":")
        try:
            os.chown(path, int(uid), int(gid or uid))
        except (PermissionError, ValueError):
            path.chmod(0o644)  # as for its directory: the private parent keeps others out

    async def _image_labels(self, docker: aiodocker.Docker) -> dict[str, str]:
        """The image's labels (read once; {} when the image is missing: create says so)."""
        if self._labels is None:
            try:
                info = await docker.images.inspect(self.image)
            except aiodocker.DockerError:
                return {}
            self._labels = dict((info.get("Config") or {}).get("Labels") or {})
        return self._labels

    def _config(
        self, workdir: Path, token: str | None, labels: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        command = ["openenv", "serve", "--ready-file", f"{_SOCKET_DIR}/ready"]
        labels = labels or {}
        env = dict(self.env)
        if self.transport == "unix":
            command += ["--uds", f"{_SOCKET_DIR}/env.sock"]
            # The container's user is not the host's: the socket must be open to all (0666),
            # and the private (0700) directory that holds it on the host keeps others out.
            env["OPENENV_UDS_MODE"] = "666"
            if token is None:
                command.append("--insecure-no-token")
        else:
            command += ["--host", "0.0.0.0", "--port", str(_CONTAINER_PORT)]
            if token is None:
                command.append("--insecure-no-token")  # published on 127.0.0.1 only
        if token is not None and labels.get(TOKEN_FILE_LABEL) == "true":
            # In a file its server reads and removes at start-up, not in the environment:
            # the container's init process keeps its environment, and runs as the env's user.
            env["OPENENV_TOKEN_FILE"] = f"{_SOCKET_DIR}/token"
            self._write_token(workdir / "run" / "token", token)
        else:  # an image built before its server read token files
            env["OPENENV_TOKEN"] = token or ""
        size = self.scratch_size or labels.get("org.openenv.scratch-size") or "64m"
        runnable = self.scratch_exec
        if runnable is None:
            runnable = labels.get("org.openenv.scratch-exec", "").lower() == "true"
        # Docker mounts a tmpfs noexec unless told "exec".
        scratch = f"rw,{'exec' if runnable else 'noexec'},nosuid,nodev,size={size},mode=1777"
        host_config: dict[str, Any] = {
            "Binds": [f"{workdir / 'run'}:{_SOCKET_DIR}:rw"],
            "NetworkMode": "bridge" if self.network else "none",
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "ReadonlyRootfs": self.read_only,
            "Tmpfs": {"/tmp": scratch},
            "Memory": self.memory,
            "MemorySwap": self.memory,
            "NanoCpus": int(self.cpus * 1e9),
            "PidsLimit": self.pids,
            "Init": True,  # reaps whatever the env spawns
        }
        config: dict[str, Any] = {
            "Image": self.image,
            "Cmd": command,
            "User": self.user,
            "Env": [f"{key}={value}" for key, value in env.items()],
            "Labels": owner_labels(self.pool),
            "HostConfig": host_config,
        }
        if self.transport == "tcp":
            port = f"{_CONTAINER_PORT}/tcp"
            config["ExposedPorts"] = {port: {}}
            host_config["PortBindings"] = {port: [{"HostIp": self.host, "HostPort": ""}]}
        return config

    async def _ready_address(self, container: Any, workdir: Path) -> str:
        ready = workdir / "run" / "ready"
        polls = 0
        try:
            async with asyncio.timeout(self.startup_timeout):
                while not ready.exists():
                    polls += 1
                    if polls % _STATE_CHECK_EVERY == 0:
                        await self._fail_if_exited(container)
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise ProviderError(
                f"container of {self.image} did not accept sessions within "
                f"{self.startup_timeout} s{await _log_tail(container)}"
            ) from None
        if self.transport == "unix":
            return f"unix://{workdir / 'run' / 'env.sock'}"
        info = await container.show()
        binding = info["NetworkSettings"]["Ports"][f"{_CONTAINER_PORT}/tcp"][0]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{binding['HostPort']}/ws"

    async def _fail_if_exited(self, container: Any) -> None:
        info = await container.show()
        state = info["State"]
        if not state["Running"]:
            raise ProviderError(
                f"container of {self.image} exited with code {state['ExitCode']} during "
                f"start-up{await _log_tail(container)}"
            )

    async def _remove(self, record: _Container) -> None:
        try:
            await self._client().containers.container(record.id).delete(force=True, v=True)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise ProviderError(
                    f"cannot remove container {record.id[:12]}: {exc.message}"
                ) from exc
        finally:
            _live.discard(record.id)
            shutil.rmtree(record.workdir, ignore_errors=True)


async def _log_tail(container: Any) -> str:
    try:
        lines = await container.log(stdout=True, stderr=True, tail=_LOG_TAIL_LINES)
    except aiodocker.DockerError:
        return ""
    text = "".join(lines).strip()
    return f"; its log ends with:\n{text}" if text else ""


class _LiveContainers:
    """Containers this process started and has not removed: removed at interpreter exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, str | None] = {}
        self._workdirs: dict[str, Path] = {}

    def add(self, container_id: str, docker_url: str | None, workdir: Path) -> None:
        with self._lock:
            self._ids[container_id] = docker_url
            self._workdirs[container_id] = workdir

    def discard(self, container_id: str) -> None:
        with self._lock:
            self._ids.pop(container_id, None)
            self._workdirs.pop(container_id, None)

    def remove_all(self) -> None:
        with self._lock:
            leftovers = dict(self._ids)
            workdirs = list(self._workdirs.values())
            self._ids.clear()
            self._workdirs.clear()
        if leftovers:
            # A fresh loop on a fresh thread: the caller's loop may be gone or still running.
            thread = threading.Thread(target=asyncio.run, args=(_force_remove(leftovers),))
            thread.start()
            thread.join(30)
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


async def _force_remove(containers: dict[str, str | None]) -> None:
    by_daemon: dict[str | None, list[str]] = {}
    for container_id, url in containers.items():
        by_daemon.setdefault(url, []).append(container_id)
    for url, ids in by_daemon.items():
        async with aiodocker.Docker(url=url) as docker:
            await asyncio.gather(
                *(docker.containers.container(i).delete(force=True) for i in ids),
                return_exceptions=True,
            )


_live = _LiveContainers()
atexit.register(_live.remove_all)
