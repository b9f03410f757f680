"""The coding server app: ``openenv serve envs.coding_env`` serves this."""

from envs.coding_env.server.coding_environment import CodingEnvironment
from openenv.server import create_app

# Fail at start-up on a bad OPENENV_CODING_* setting rather than in every session, and start
# the worker fork server now so the first session does not wait for it.
CodingEnvironment.prewarm()

app = create_app(CodingEnvironment)
