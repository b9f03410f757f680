"""The terminal server app: ``openenv serve envs.terminal_env`` serves this."""

from envs.terminal_env.server.terminal_environment import TerminalEnvironment, protect_server
from openenv.server import create_app

# Fail at start-up on a bad OPENENV_TERMINAL_* setting rather than in every session; and
# keep the shells (same user) out of this process's memory and environment.
TerminalEnvironment()
protect_server()

app = create_app(TerminalEnvironment)
