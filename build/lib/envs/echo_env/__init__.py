"""Echo environment: echoes each message back, rewarding its length."""

from envs.echo_env.client import AsyncEchoEnv, EchoEnv
from envs.echo_env.models import EchoAction, EchoObservation

__all__ = ["AsyncEchoEnv", "EchoAction", "EchoEnv", "EchoObservation"]
