"""``from_docker_image(image, **options)`` is typed by ``DockerOptions``, which must name exactly
the Docker provider's keyword arguments."""

from __future__ import annotations

import inspect
import typing

from openenv.providers.docker import DockerOptions, LocalDockerProvider


def test_docker_options_match_the_provider_arguments() -> None:
    parameters = inspect.signature(LocalDockerProvider).parameters
    keyword_only = {
        name: p for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    hints = typing.get_type_hints(DockerOptions)
    assert set(hints) == set(keyword_only)
    provider_hints = typing.get_type_hints(LocalDockerProvider.__init__)
    for name in hints:
        assert hints[name] == provider_hints[name], name
