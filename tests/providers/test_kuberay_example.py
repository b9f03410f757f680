"""examples/kuberay/rollouts.py, the KubeRay example's rollout job, run for real.

On the loopback Ray cluster of ray_cluster.py, a third node stands in for a pod of the
RayCluster's ``envs-process`` group: it advertises the ``env_host`` resource and the
``openenv.backend=process`` label, as that group's ``rayStartParams`` make its pods do. The job's
script then runs unchanged (a driver of its own, as in the Job's pod) and must put every server
on that node and finish every episode. tests/examples/test_kuberay.py checks the manifests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.providers.ray_cluster import NODE_OPTIONS, RayCluster, eventually

pytestmark = pytest.mark.timeout(180)

ROLLOUTS = Path(__file__).resolve().parents[2] / "examples" / "kuberay" / "rollouts.py"


async def test_the_rollout_job_runs_on_the_env_host_node(ray_cluster: RayCluster) -> None:
    import ray

    ray_cluster.ensure_two_nodes()
    node = ray_cluster.cluster.add_node(
        **NODE_OPTIONS, resources={"env_host": 1}, labels={"openenv.backend": "process"}
    )
    try:
        ray_cluster.cluster.wait_for_nodes()
        env = {**os.environ, "RAY_ADDRESS": ray_cluster.address, "OPENENV_SESSIONS": "8",
               "OPENENV_SESSIONS_PER_SERVER": "4", "OPENENV_EPISODES": "32",
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, str(ROLLOUTS)], env=env, capture_output=True,
            text=True, timeout=150,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        # Every server on the env-host node (RayProvider.node_of gives a server's node id).
        assert f"32/32 episodes, 2 servers on nodes ['{node.node_id}']" in done.stdout, done.stdout
    finally:
        ray_cluster.cluster.remove_node(node)
        assert await eventually(lambda: len(ray_cluster.alive_node_ids()) == 2, within=60)
    assert ray.is_initialized()
