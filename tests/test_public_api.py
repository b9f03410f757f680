"""The public surface is deliberate: adding or removing a name must show up here."""

from __future__ import annotations

import subprocess
import sys

import openenv


def test_all_is_locked() -> None:
    assert sorted(openenv.__all__) == sorted(
        [
            "Action", "ActionTypeError", "AddressError", "EnvMismatchError",
            "AsyncEnv", "AsyncEnvClient", "AuthenticationError", "BatchError",
            "CapacityError", "ConnectError", "Env", "EnvPool", "Episode", "ErrorCode", "PoolStats",
            "ConnectionLostError", "Endpoint", "EndpointProvider", "EnvClient", "EnvError",
            "EnvTimeoutError",
            "InheritedSessionError", "InvalidActionError", "InvalidMessageError",
            "LocalProcessProvider", "NotResetError",
            "NotSupportedError",
            "Observation", "OpenEnvError", "PoolError", "ProtocolError", "Provider",
            "ProviderError", "RemoteError", "ServerHandle", "ServerTimeoutError", "State",
            "StepResult", "VersionMismatchError", "__version__",
        ]
    )  # fmt: skip
    for name in openenv.__all__:
        assert hasattr(openenv, name)


def test_every_error_derives_from_the_root() -> None:
    for name in openenv.__all__:
        value = getattr(openenv, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, openenv.OpenEnvError), name


def test_importing_a_client_pulls_in_no_server_dependency() -> None:
    code = (
        "import sys, openenv, envs.echo_env\n"
        "heavy = {'uvicorn', 'starlette', 'smolagents', 'aiodocker'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_public_name_resolves_lazily_and_serving_skips_the_client() -> None:
    import openenv as package

    assert set(package._EXPORTS) == set(package.__all__) - {"__version__"}
    code = "import sys, openenv.server.serve\nprint('openenv.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr
