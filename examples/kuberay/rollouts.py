"""A rollout job's pool on the RayCluster of raycluster.yaml: env servers on its env-host nodes.

job.yaml runs this file (mounted from a ConfigMap made of it), and so does
tests/providers/test_kuberay_example.py, against a real Ray cluster on loopback with a node
advertising ``env_host``.
Settings come from the environment: RAY_ADDRESS (the cluster), OPENENV_SESSIONS,
OPENENV_SESSIONS_PER_SERVER, OPENENV_EPISODES.
"""

import asyncio
import os

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool
from openenv.providers.ray import RayProvider


async def episode(env: AsyncEchoEnv) -> float:
    await env.reset()
    total = 0.0
    for word in ("rollout", "on", "kuberay"):
        result = await env.step(EchoAction(message=word))
        assert result.observation.echoed_message == word, "a reply of another session"
        total += result.reward or 0.0
    return total


async def main() -> None:
    provider = RayProvider(
        "envs.echo_env",
        address=os.environ.get("RAY_ADDRESS"),
        node_resource="env_host",  # only the env-host groups' pods
        node_labels={"openenv.backend": "process"},
    )
    sessions = int(os.environ.get("OPENENV_SESSIONS", "64"))
    per_server = int(os.environ.get("OPENENV_SESSIONS_PER_SERVER", "16"))
    async with EnvPool(AsyncEchoEnv, provider, sessions, sessions_per_server=per_server) as pool:
        outcomes = await pool.run_episodes(episode, int(os.environ.get("OPENENV_EPISODES", "256")))
        done = sum(outcome.ok for outcome in outcomes)
        nodes = sorted({provider.node_of(server) for server in pool.servers})
        print(f"{done}/{len(outcomes)} episodes, {len(pool.servers)} servers on nodes {nodes}")
        print(pool.stats)
        if done != len(outcomes):
            raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
