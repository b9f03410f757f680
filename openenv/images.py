"""``openenv build``: hermetic env images, from a checkout or from an installed wheel alike.

The build context holds the env's Dockerfile and a wheelhouse: this project's wheel, packed from
the installed ``openenv`` and ``envs`` packages (so an editable install packs the working tree,
and a wheel install needs no checkout), and the wheels of everything it needs server-side
(``pip wheel``, cached in ``~/.cache/openenv/wheelhouse``). The image installs them with
``pip --no-index``; the build itself runs with no network. The install stage's image is removed
afterwards (by a per-build label), so builds leave no dangling ``<none>`` images.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import aiodocker

from openenv.exceptions import BuildError, EnvNotFoundError
from openenv.progress import Progress
from openenv.providers.docker import TOKEN_FILE_LABEL
from openenv.registry import image_name, resolve

__all__ = [
    "DIST_NAME",
    "LOCAL_BASE_IMAGE",
    "BuildReport",
    "build_image",
    "default_base_image",
    "default_tag",
    "env_dir_of",
    "project_wheel",
    "wheelhouse",
]

DIST_NAME = "openenv-rl"
LOCAL_BASE_IMAGE = "openenv-base:bookworm"  # made by `make base-image` where no registry is
_FALLBACK_BASE_IMAGE = "python:3.11-slim"
# What an env image installs, unless its Dockerfile names its own extras on a line
# ``ARG OPENENV_EXTRAS=...`` (the gym image's catalog is too large to ride in every context).
_EXTRAS = "server,coding,terminal"
_EXTRAS_ARG = re.compile(r"^ARG OPENENV_EXTRAS=([\w,-]+)\s*$", re.MULTILINE)
_PACKAGES = ("openenv", "envs")
_BUILD_LABEL = "openenv.build"
_CONTEXT_WHEELS = ".build/wheelhouse"
_OURS = re.sub(r"[-_.]+", "_", DIST_NAME) + "-"  # how our wheels' file names begin


@dataclass(frozen=True)
class BuildReport:
    """What a build made and how long it took."""

    tag: str
    size_bytes: int
    wheels_s: float
    build_s: float


def default_tag(env_dir: Path) -> str:
    """``envs/echo_env`` -> ``echo-env:latest`` (:func:`openenv.registry.image_name`)."""
    return image_name(str(env_dir.resolve()))


def env_dir_of(name: str) -> Path:
    """The directory of the env ``name``: a directory holding ``server/Dockerfile``, an env
    package's module path (``envs.echo_env``) or a registered name (``echo``).

    Raises:
        EnvNotFoundError: no such env, or it has no ``server/Dockerfile``.
    """
    given = Path(name)
    if (given / "server" / "Dockerfile").is_file():
        return given.resolve()
    env_dir = resolve(name).directory()
    if not (env_dir / "server" / "Dockerfile").is_file():
        raise EnvNotFoundError(f"env {name!r} has no server/Dockerfile (looked in {env_dir})")
    return env_dir


def default_cache() -> Path:
    """Where third-party wheels are kept between builds."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openenv" / "wheelhouse"


def project_wheel(target: Path) -> Path:
    """Pack this project's wheel from its installed packages into ``target``.

    Works from an editable install (it packs the working tree) and from a wheel install (no
    checkout needed), with the installed metadata, so the image gets the same entry points.
    """
    # The installed dist-info, not a checkout's *.egg-info (no METADATA) that a checkout on
    # sys.path (resolving an env directory puts it there) would find first.
    dist = next((d for d in distributions(name=DIST_NAME) if d.read_text("METADATA")), None)
    if dist is None:
        raise BuildError(f"{DIST_NAME} is not installed; cannot pack its wheel")
    stem = f"{re.sub(r'[-_.]+', '_', DIST_NAME)}-{dist.version}"
    files: dict[str, bytes] = {}
    for package in _PACKAGES:
        root = Path(importlib.import_module(package).__path__[0])
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[f"{package}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    info = f"{stem}.dist-info"
    # An editable install's metadata may be found as the checkout's egg-info (PKG-INFO) when
    # the checkout is on sys.path (as `openenv build envs/x` puts it): the same fields.
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    if not metadata.strip():
        raise BuildError(f"{DIST_NAME}'s installed metadata is empty; reinstall it")
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    files[f"{info}/top_level.txt"] = "\n".join(_PACKAGES).encode() + b"\n"
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: openenv build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = target / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheelhouse(own: Path, cache: Path, extras: str = _EXTRAS) -> Path:
    """The wheel ``own`` plus every wheel it needs server-side (its ``extras``), gathered in a
    ``wheelhouse`` folder beside ``own``; third-party wheels are kept in ``cache`` between
    builds.

    Our own wheel never stays in ``cache``: pip would take a copy packed from another checkout
    (same name and version) for ``own``, and gather that checkout's dependencies.

    Raises:
        BuildError: pip could not build or fetch a dependency.
    """
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(f"{_OURS}*.whl"):  # left there by builds before this rule
        stale.unlink(missing_ok=True)
    target = own.parent / "wheelhouse"
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(target)]
    command += ["--find-links", str(cache), f"{own}[{extras}]"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"building wheels failed: {_last_line(done.stderr)}")
    for wheel in target.glob("*.whl"):
        kept = cache / wheel.name
        if not wheel.name.startswith(_OURS) and not kept.exists():
            partial = cache / f".{wheel.name}.{os.getpid()}.part"  # builds may run at once
            shutil.copyfile(wheel, partial)
            os.replace(partial, kept)
    return target


def _extras_of(dockerfile: Path) -> str:
    """The extras the image installs: its Dockerfile's ``ARG OPENENV_EXTRAS=...``, else all
    the shipped envs' server-side extras."""
    found = _EXTRAS_ARG.search(dockerfile.read_text())
    return found.group(1) if found else _EXTRAS


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _skip_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = Path(info.name).name
    return None if name == "__pycache__" or name.endswith(".pyc") else info


def _context(dockerfile: Path, wheels: Path, own: Path) -> bytes:
    """The build context: the Dockerfile, the env's folder as ``<env-name>/`` (for envs outside
    this project's packages, whose Dockerfile copies it, as ``openenv init``'s does), the cached
    dependencies and our own wheel."""
    buffer = io.BytesIO()
    env_dir = dockerfile.parent.parent
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(dockerfile, arcname="Dockerfile")
        tar.add(env_dir, arcname=env_dir.name, filter=_skip_caches)
        for wheel in sorted(wheels.glob("*.whl")):
            if not wheel.name.startswith(_OURS):  # pip's copy of ``own``
                tar.add(wheel, arcname=f"{_CONTEXT_WHEELS}/{wheel.name}")
        tar.add(own, arcname=f"{_CONTEXT_WHEELS}/{own.name}")
    return buffer.getvalue()


async def default_base_image() -> str:
    """The local base image (``make base-image``) when this machine has it, else the
    registry's ``python:3.11-slim``."""
    try:
        async with aiodocker.Docker() as docker:
            await docker.images.inspect(LOCAL_BASE_IMAGE)
    except (aiodocker.DockerError, OSError, ValueError):
        return _FALLBACK_BASE_IMAGE
    return LOCAL_BASE_IMAGE


async def build_image(
    env_dir: Path,
    *,
    tag: str | None = None,
    base_image: str | None = None,
    cache: Path | None = None,
    show_progress: bool = True,
) -> BuildReport:
    """Build ``env_dir/server/Dockerfile`` into ``tag`` (default ``<env-name>:latest``).

    Raises:
        BuildError: no Dockerfile, wheels failed to build, no Docker daemon, the base image is
            missing and cannot be pulled, or a build step failed.
    """
    env_dir = env_dir.resolve()
    dockerfile = env_dir / "server" / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildError(f"{dockerfile} does not exist")
    tag = tag or default_tag(env_dir)
    base_image = base_image or await default_base_image()
    started = time.monotonic()
    with (
        Progress(f"{tag}: building wheels", enabled=show_progress, plain_lines=True) as progress,
        tempfile.TemporaryDirectory(prefix="openenv-build-") as scratch,
    ):
        own = await asyncio.to_thread(project_wheel, Path(scratch))
        extras = _extras_of(dockerfile)
        wheels = await asyncio.to_thread(wheelhouse, own, cache or default_cache(), extras)
        wheels_s = time.monotonic() - started
        progress.update(description=f"{tag}: building image from {base_image}")
        context = _context(dockerfile, wheels, own)
        try:
            async with aiodocker.Docker() as docker:
                await _build(docker, context, tag, base_image, progress)
                size = (await docker.images.inspect(tag))["Size"]
        except (aiodocker.DockerError, OSError, ValueError) as exc:
            raise BuildError(f"building {tag} failed: {exc}") from exc
    return BuildReport(tag, int(size), wheels_s, time.monotonic() - started - wheels_s)


async def _build(
    docker: aiodocker.Docker, context: bytes, tag: str, base_image: str, progress: Progress
) -> None:
    build_id = uuid.uuid4().hex
    have_base = await _exists(docker, base_image)
    replaced = await _image_id(docker, tag)
    params = {
        "t": tag,
        "dockerfile": "Dockerfile",
        "buildargs": json.dumps({"BASE_IMAGE": base_image, "OPENENV_BUILD": build_id}),
        # Its server reads OPENENV_TOKEN_FILE: providers hand it the token in a file, not in
        # the container's environment (which its init process, the env's user, can read).
        "labels": json.dumps({TOKEN_FILE_LABEL: "true"}),
        "networkmode": "none",  # hermetic: everything comes from the wheelhouse
        "rm": "1",
        "forcerm": "1",
    }
    try:
        # aiodocker's images.build() cannot set networkmode, so this calls its request helper.
        response = docker._query(
            "build",
            "POST",
            params=params,
            headers={"content-type": "application/x-tar"},
            data=context,
            timeout=docker._resolve_long_running_timeout(None),
        )
        async with response as resp:
            async for line in resp.content:
                if not line.strip():
                    continue
                event: dict[str, Any] = json.loads(line)
                if "error" in event:
                    raise BuildError(_build_failure(tag, base_image, have_base, event["error"]))
                text = str(event.get("stream", "")).strip()
                if text.startswith("Step "):
                    progress.update(description=f"{tag}: {text}")
        if replaced is not None and replaced != await _image_id(docker, tag):
            await _remove_replaced(docker, replaced)
    finally:
        await _remove_stage_images(docker, build_id)


def _build_failure(tag: str, base_image: str, have_base: bool, error: str) -> str:
    error = " ".join(error.split())
    if not have_base:
        return (
            f"building {tag} failed: the base image {base_image} is not on this machine and "
            f"could not be pulled ({error}). Without a registry, make the local base image "
            f"(`make base-image` in a checkout) and pass --base-image {LOCAL_BASE_IMAGE}"
        )
    return f"building {tag} failed: {error}"


async def _exists(docker: aiodocker.Docker, image: str) -> bool:
    try:
        await docker.images.inspect(image)
    except aiodocker.DockerError:
        return False
    return True


async def _image_id(docker: aiodocker.Docker, image: str) -> str | None:
    try:
        return str((await docker.images.inspect(image))["Id"])
    except aiodocker.DockerError:
        return None


async def _remove_replaced(docker: aiodocker.Docker, image_id: str) -> None:
    """Remove the image ``tag`` named before this build, which the build left untagged: each
    rebuild would otherwise leave one more dangling ``<none>`` image. Not forced, so Docker
    keeps it while a container uses it or another tag names it."""
    try:
        await docker.images.delete(image_id)
    except aiodocker.DockerError:
        pass  # in use, or named by another tag: not ours to remove


async def _remove_stage_images(docker: aiodocker.Docker, build_id: str) -> None:
    """Remove the install stage's image of this build (untagged, so it would dangle)."""
    stages = await docker.images.list(filters={"label": [f"{_BUILD_LABEL}={build_id}"]})
    for image in stages:
        try:
            await docker.images.delete(image["Id"], force=True)
        except aiodocker.DockerError:
            pass  # already gone
