"""Example environments shipped with openenv."""
