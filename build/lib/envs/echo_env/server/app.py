"""The echo server app: ``openenv serve envs.echo_env`` serves this."""

from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import create_app

app = create_app(EchoEnvironment)
