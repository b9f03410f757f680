"""The coding environment's server side: the environment, its worker process and the app."""
