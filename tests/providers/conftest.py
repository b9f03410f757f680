"""Provider fixtures: the Ray cluster (see ray_cluster.py)."""

from tests.providers.ray_cluster import ray_cluster

__all__ = ["ray_cluster"]
