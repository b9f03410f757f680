"""``openenv build``: hermetic env images.

Wheels for the project and its server-side dependencies are built on the host
(``pip wheel`` into ``.build/wheelhouse``); the image installs them with ``pip --no-index``, and
the build itself runs with no network. The build context is the repository root, filtered to
what ``.dockerignore`` lets through.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker

from openenv.exceptions import ProviderError
from openenv.progress import Progress

__all__ = ["BuildReport", "build_image", "default_tag", "wheelhouse"]

# Everything any env image installs; one wheelhouse serves them all.
_EXTRAS = "server,coding"


@dataclass(frozen=True)
class BuildReport:
    """What a build made and how long it took."""

    tag: str
    size_bytes: int
    wheels_s: float
    build_s: float


def default_tag(env_dir: Path) -> str:
    """``envs/echo_env`` -> ``echo-env:latest``."""
    return f"{env_dir.resolve().name.replace('_', '-')}:latest"


def wheelhouse(root: Path) -> Path:
    """Build (or refresh) the wheels of the project and everything it needs server-side."""
    target = root / ".build" / "wheelhouse"
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("openenv-*.whl"):
        stale.unlink()  # the project's own wheel is rebuilt from the working tree every time
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(target)]
    command += ["--find-links", str(target), f"{root}[{_EXTRAS}]"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ProviderError(f"building wheels failed:\n{done.stderr[-3000:]}")
    return target


def _context(root: Path, dockerfile: Path) -> io.BytesIO:
    """The build context: the Dockerfile and the wheelhouse, at their repository paths."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(dockerfile, arcname=str(dockerfile.relative_to(root)))
        tar.add(root / ".build" / "wheelhouse", arcname=".build/wheelhouse")
    buffer.seek(0)
    return buffer


async def build_image(
    env_dir: Path,
    *,
    tag: str | None = None,
    base_image: str = "python:3.11-slim",
    root: Path | None = None,
    show_progress: bool = True,
) -> BuildReport:
    """Build ``env_dir/server/Dockerfile`` into ``tag`` (default ``<env-name>:latest``)."""
    root = (root or Path.cwd()).resolve()
    env_dir = env_dir.resolve()
    dockerfile = env_dir / "server" / "Dockerfile"
    if not dockerfile.is_file():
        raise ProviderError(f"{dockerfile} does not exist")
    tag = tag or default_tag(env_dir)
    started = time.monotonic()
    with Progress(f"{tag}: building wheels", enabled=show_progress, plain_lines=True) as progress:
        await asyncio.to_thread(wheelhouse, root)
        wheels_s = time.monotonic() - started
        progress.update(description=f"{tag}: building image from {base_image}")
        async with aiodocker.Docker() as docker:
            await _build(docker, root, dockerfile, tag, base_image, progress)
            size = (await docker.images.inspect(tag))["Size"]
    return BuildReport(tag, int(size), wheels_s, time.monotonic() - started - wheels_s)


async def _build(
    docker: aiodocker.Docker,
    root: Path,
    dockerfile: Path,
    tag: str,
    base_image: str,
    progress: Progress,
) -> None:
    params = {
        "t": tag,
        "dockerfile": str(dockerfile.relative_to(root)),
        "buildargs": json.dumps({"BASE_IMAGE": base_image}),
        "networkmode": "none",  # hermetic: everything comes from the wheelhouse
        "rm": "1",
        "forcerm": "1",
    }
    # aiodocker's images.build() cannot set networkmode, so this calls its request helper.
    response = docker._query(
        "build",
        "POST",
        params=params,
        headers={"content-type": "application/x-tar"},
        data=_context(root, dockerfile).getvalue(),
        timeout=docker._resolve_long_running_timeout(None),
    )
    async with response as resp:
        async for line in resp.content:
            if not line.strip():
                continue
            event: dict[str, Any] = json.loads(line)
            if "error" in event:
                raise ProviderError(f"building {tag} failed: {event['error'].strip()}")
            text = str(event.get("stream", "")).strip()
            if text.startswith("Step "):
                progress.update(description=f"{tag}: {text}")
