"""The server side: the Environment base class, its ``@tool`` decorator and the app that
serves it."""

from openenv.server.app import create_app
from openenv.server.config import ServerConfig
from openenv.server.environment import Environment
from openenv.server.serve import load_app, serve
from openenv.server.tools import tool

__all__ = ["Environment", "ServerConfig", "create_app", "load_app", "serve", "tool"]
