"""RayProvider on a real 2-node Ray cluster on this machine (see ray_cluster.py).

The first test checks the traffic rule: every socket the cluster listens on is on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from typing import Any

import psutil
import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool, ProviderError
from tests.conftest import ECHO_IMAGE, containers_labelled, our_folders
from tests.providers.ray_cluster import (
    RayCluster,
    cluster_processes,
    eventually,
    marked_servers,
    pid_running,
)

pytestmark = pytest.mark.timeout(120)


def ray_provider(mark: str, **options: Any) -> Any:
    from openenv.providers.ray import RayProvider

    return RayProvider("envs.echo_env", env={"OPENENV_TEST_MARK": mark}, **options)


def host_actors(provider_id: str) -> list[str]:
    """Names of the env-host actors of one provider that Ray still knows."""
    import ray

    from openenv.providers.ray import HOST_NAME_PREFIX, NAMESPACE

    prefix = f"{HOST_NAME_PREFIX}:{provider_id}:"
    return [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == NAMESPACE and actor["name"].startswith(prefix)
    ]


def host_actor(provider: Any, node_id: str) -> Any:
    """The (first) env-host actor of ``provider`` on ``node_id``, found by its name."""
    import ray

    from openenv.providers.ray import HOST_NAME_PREFIX, NAMESPACE

    return ray.get_actor(f"{HOST_NAME_PREFIX}:{provider.id}:{node_id}:1", namespace=NAMESPACE)


async def prune_what_dead_hosts_left() -> None:
    """Servers that died with their env-host (killed, its node or its owner dead) could not
    remove their temp folders: `openenv prune --ray` does, once Ray has ended the hosts."""
    from openenv.providers.ray_housekeeping import prune_cluster

    async def pruned() -> bool:
        await asyncio.to_thread(prune_cluster)
        return our_folders() == []

    assert await eventually(pruned, within=30, every=0.5), f"left over: {our_folders()}"


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_every_socket_of_the_cluster_is_on_loopback(ray_cluster: RayCluster) -> None:
    bound: list[tuple[str, str, int]] = []
    names = set()
    for process in cluster_processes():
        try:
            name = process.name()
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        names.add(name)
        for conn in connections:
            listening = conn.status == psutil.CONN_LISTEN
            if listening or (conn.type == 2 and conn.laddr):  # 2: SOCK_DGRAM, bound UDP
                bound.append((name, conn.laddr.ip, conn.laddr.port))
    assert {"gcs_server", "raylet"} <= names, f"the cluster's processes were not found: {names}"
    assert len(bound) >= 4, f"too few listening sockets found to judge: {bound}"
    outside = [entry for entry in bound if not is_loopback(entry[1])]
    assert outside == [], f"listening beyond loopback: {outside}"


async def test_servers_spread_over_both_nodes_and_clients_reach_them_directly(
    ray_cluster: RayCluster,
) -> None:
    ray_cluster.ensure_two_nodes()
    mark = uuid.uuid4().hex
    async with ray_provider(mark) as provider:
        servers = await asyncio.gather(*(provider.start() for _ in range(4)))
        nodes = Counter(provider.node_of(server) for server in servers)
        assert sorted(nodes.values()) == [2, 2]
        assert set(nodes) == set(ray_cluster.alive_node_ids())
        assert all(server.id.startswith(provider.node_of(server)[:12]) for server in servers)
        pids = marked_servers(mark)
        assert len(pids) == 4
        # The endpoint is the env server's own port on the node's address: no Ray in between.
        ports = {
            conn.laddr.port
            for pid in pids
            for conn in psutil.Process(pid).net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        for server in servers:
            assert server.endpoint.url.startswith("ws://127.0.0.1:")
            assert server.endpoint.token
            assert int(server.endpoint.url.rsplit(":", 1)[1].split("/")[0]) in ports
            async with AsyncEchoEnv(server.endpoint) as env:
                await env.reset()
                result = await env.step(EchoAction(message=server.id))
                assert result.observation.echoed_message == server.id
            assert await provider.is_alive(server)
        await provider.stop(servers[0])
        assert not await provider.is_alive(servers[0])
        assert len(provider.running()) == 3
    assert await eventually(lambda: marked_servers(mark) == [], within=10)
    assert await eventually(lambda: host_actors(provider.id) == [], within=10)


async def test_a_pool_spans_both_nodes(ray_cluster: RayCluster) -> None:
    ray_cluster.ensure_two_nodes()
    mark = uuid.uuid4().hex
    provider = ray_provider(mark)
    async with EnvPool(AsyncEchoEnv, provider, 8) as pool:
        assert Counter(provider.node_of(s) for s in provider.running()).most_common()[0][1] == 4
        await pool.reset()
        messages = [f"env-{i}" for i in range(8)]
        results = await pool.step([EchoAction(message=m) for m in messages])
        assert [r.observation.echoed_message for r in results] == messages
    assert await eventually(lambda: marked_servers(mark) == [], within=10)


async def test_placement_options(ray_cluster: RayCluster) -> None:
    ray_cluster.ensure_two_nodes()
    mark = uuid.uuid4().hex
    async with ray_provider(mark, max_servers_per_node=1) as provider:
        first, second = await asyncio.gather(provider.start(), provider.start())
        assert provider.node_of(first) != provider.node_of(second)
        with pytest.raises(ProviderError, match="fewer than 1 servers"):
            await provider.start()
    head = ray_cluster.cluster.head_node.node_id
    async with ray_provider(mark, node_labels={"ray.io/node-id": head}) as provider:
        servers = await asyncio.gather(*(provider.start() for _ in range(3)))
        assert {provider.node_of(server) for server in servers} == {head}
    async with ray_provider(mark, node_resource="gpu_sandbox") as provider:
        with pytest.raises(ProviderError, match="resource 'gpu_sandbox'"):
            await provider.start()
    assert await eventually(lambda: marked_servers(mark) == [], within=10)


async def test_a_dead_host_actor_is_tolerated_and_start_moves_on(ray_cluster: RayCluster) -> None:
    import ray

    ray_cluster.ensure_two_nodes()
    mark = uuid.uuid4().hex
    async with ray_provider(mark, max_servers_per_node=3) as provider:
        servers = await asyncio.gather(*(provider.start() for _ in range(3)))
        loads = Counter(provider.node_of(server) for server in servers)
        quiet_node = min(loads, key=loads.__getitem__)  # 1 server there, 2 on the other
        lonely = next(s for s in servers if provider.node_of(s) == quiet_node)
        ray.kill(host_actor(provider, quiet_node), no_restart=True)  # behind its back
        # Its server died with it (it watched its host's process).
        assert await eventually(lambda: len(marked_servers(mark)) == 2, within=10)
        # The least-loaded node is tried first, its dead host fails, the other node takes it.
        moved = await provider.start()
        assert provider.node_of(moved) != quiet_node
        assert not await provider.is_alive(lonely)
        await provider.kill(lonely)  # nothing to kill: no error
        await provider.stop(lonely)  # nor to stop
        # The other node is full (3): the dead host's node, alive, gets a new env-host.
        fresh = await provider.start()
        assert provider.node_of(fresh) == quiet_node
        assert any(name.endswith(f"{quiet_node}:2") for name in host_actors(provider.id))
        async with AsyncEchoEnv(fresh.endpoint) as env:
            await env.reset()
        await provider.kill(fresh)
        # A SIGKILLed process takes a moment to die: its cmdline empties before it is gone.
        assert await eventually(lambda: provider.is_alive(fresh), within=10, want=False)
    assert await eventually(lambda: marked_servers(mark) == [], within=10)
    assert await eventually(lambda: host_actors(provider.id) == [], within=10)
    await prune_what_dead_hosts_left()


async def test_a_server_that_cannot_start_is_tried_on_another_node(
    ray_cluster: RayCluster,
) -> None:
    from openenv.providers.ray import RayProvider

    ray_cluster.ensure_two_nodes()
    async with RayProvider("no_such_module:app", startup_timeout=20) as provider:
        with pytest.raises(ProviderError, match=r"on 2 node\(s\).*exited with code") as caught:
            await provider.start()
        assert "no module named 'no_such_module'" in str(caught.value).lower()
        assert provider.running() == []


async def test_a_node_dies_mid_run_and_every_episode_completes(ray_cluster: RayCluster) -> None:
    ray_cluster.ensure_two_nodes()
    mark = uuid.uuid4().hex
    provider = ray_provider(mark)
    victim = ray_cluster.worker_nodes()[0]
    done = 0
    twenty_done, node_removed, servers_gone = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def episode(env: AsyncEchoEnv) -> int:
        nonlocal done
        await env.reset()
        wrong = 0
        for step in range(10):
            if step == 5 and node_removed.is_set():
                # Mid-episode until the dead node's servers are gone (how soon they go after
                # their raylet depends on the machine's load): every env there is caught.
                await servers_gone.wait()
            message = f"{id(env)}-{step}-{uuid.uuid4().hex[:6]}"
            result = await env.step(EchoAction(message=message))
            wrong += result.observation.echoed_message != message
        done += 1
        if done == 20:
            twenty_done.set()
        return wrong

    async def kill_the_node(pids: list[int]) -> None:
        await twenty_done.wait()
        node_removed.set()
        ray_cluster.cluster.remove_node(victim, allow_graceful=False)
        gone = await eventually(lambda: not any(pid_running(p) for p in pids), within=30)
        servers_gone.set()
        assert gone, "the dead node's servers outlived it"

    # Two sessions per server: a dead server's sessions share one replacement.
    async with EnvPool(AsyncEchoEnv, provider, 8, sessions_per_server=2) as pool:
        assert {provider.node_of(s) for s in provider.running()} == {
            ray_cluster.cluster.head_node.node_id,
            victim.node_id,
        }
        on_victim = [s for s in provider.running() if provider.node_of(s) == victim.node_id]
        doomed = [int(s.id.split("/")[1]) for s in on_victim]  # <node>/<pid>
        killer = asyncio.ensure_future(kill_the_node(doomed))
        outcomes = await pool.run_episodes(episode, 120, retries=2)
        await killer
        failed = [(o.index, repr(o.error)) for o in outcomes if not o.ok]
        assert failed == [], f"episodes failed: {failed}"
        assert sum(o.result or 0 for o in outcomes) == 0, "a wrong reply came back"
        assert any(o.attempts > 1 for o in outcomes), "the node died before or after the run"
        assert 1 <= pool.stats.servers_replaced <= 2  # the dead node ran 2 of the 4 servers
        survivors = {provider.node_of(s) for s in provider.running()}
        assert survivors == {ray_cluster.cluster.head_node.node_id}
    assert await eventually(lambda: marked_servers(mark) == [], within=15)
    assert await eventually(lambda: host_actors(provider.id) == [], within=15)
    ray_cluster.ensure_two_nodes()
    await prune_what_dead_hosts_left()


DRIVER = textwrap.dedent(
    """
    import asyncio, os, sys
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from openenv.providers.ray import RayProvider

    async def main():
        ray.init(address=sys.argv[1], log_to_driver=False)
        provider = RayProvider("envs.echo_env", env={"OPENENV_TEST_MARK": sys.argv[2]})
        await asyncio.gather(*(provider.start() for _ in range(4)))
        print(provider.id, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_a_driver_killed_by_sigkill_leaves_nothing_on_any_node(
    ray_cluster: RayCluster,
) -> None:
    ray_cluster.ensure_two_nodes()
    mark = uuid.uuid4().hex
    driver = subprocess.Popen(  # noqa: ASYNC220 - the driver under test, started once
        [sys.executable, "-c", DRIVER, ray_cluster.address, mark],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
    )
    try:
        assert driver.stdout is not None
        provider_id = (await asyncio.to_thread(driver.stdout.readline)).strip()
        assert provider_id, "the driver did not start its servers"
        assert len(marked_servers(mark)) == 4
        assert len(host_actors(provider_id)) == 2
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        assert await eventually(lambda: marked_servers(mark) == [], within=30)
        assert await eventually(lambda: host_actors(provider_id) == [], within=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    await prune_what_dead_hosts_left()


async def test_ps_and_prune_across_the_cluster(ray_cluster: RayCluster) -> None:
    from openenv.providers.ray_housekeeping import list_hosts, prune_cluster

    ray_cluster.ensure_two_nodes()
    mark = uuid.uuid4().hex
    async with ray_provider(mark) as provider:
        servers = await asyncio.gather(provider.start(), provider.start())
        rows = [row for row in await asyncio.to_thread(list_hosts) if row.provider == provider.id]
        assert sorted(row.info["node_id"] for row in rows if row.info) == sorted(
            provider.node_of(server) for server in servers
        )
        listed = {s["id"] for row in rows if row.info for s in row.info["servers"]}
        assert listed == {server.id.split("/")[1] for server in servers}
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "openenv", "ps", "--ray", "--ray-address", ray_cluster.address],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count(provider.id) == 2
        report = await asyncio.to_thread(prune_cluster, None, True)
        assert len([name for name in report.hosts_killed if provider.id in name]) == 2
        assert report.unreachable == []
        assert await eventually(lambda: marked_servers(mark) == [], within=15)
        assert not await provider.is_alive(servers[0])
    assert host_actors(provider.id) == []
    await prune_what_dead_hosts_left()


def containers_of(pool: str) -> list[str]:
    return containers_labelled(f"openenv.pool={pool}")


async def test_the_docker_backend_and_prune_of_a_killed_hosts_containers(
    ray_cluster: RayCluster, docker_images: None
) -> None:
    from openenv.providers.ray import POOL_PREFIX, RayProvider
    from openenv.providers.ray_housekeeping import prune_cluster

    ray_cluster.ensure_two_nodes()
    async with RayProvider(ECHO_IMAGE, backend="docker", memory="128m") as provider:
        pool = f"{POOL_PREFIX}{provider.id}"
        servers = await asyncio.gather(provider.start(), provider.start())
        assert len({provider.node_of(server) for server in servers}) == 2
        assert len(containers_of(pool)) == 2
        for server in servers:
            assert server.endpoint.url.startswith("ws://127.0.0.1:")
            async with AsyncEchoEnv(server.endpoint) as env:
                await env.reset()
                result = await env.step(EchoAction(message="in a container"))
                assert result.observation.echoed_message == "in a container"
        # A host SIGKILLed (no exit hook runs) cannot remove its container: prune --ray does.
        host = host_actor(provider, provider.node_of(servers[0]))
        os.kill((await host.info.remote())["pid"], signal.SIGKILL)
        assert await eventually(lambda: provider.is_alive(servers[0]), within=10, want=False)
        before = set(containers_of(pool))
        assert len(before) == 2
        report = await asyncio.to_thread(prune_cluster)
        # Every node shares this machine's daemon, so more than one node may report it.
        removed = {c[:12] for ids in report.containers.values() for c in ids}
        assert len(removed) == 1 and removed < before
        assert len(containers_of(pool)) == 1
        assert await provider.is_alive(servers[1])
    assert containers_of(pool) == []
    await prune_what_dead_hosts_left()


async def test_openenv_bench_on_the_cluster(ray_cluster: RayCluster) -> None:
    ray_cluster.ensure_two_nodes()
    done = await asyncio.to_thread(
        subprocess.run,
        [
            *(sys.executable, "-m", "openenv", "bench", "--provider", "ray"),
            *("--ray-address", ray_cluster.address, "--sessions", "4", "--steps", "20"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "provider=ray/process sessions=4 servers=2" in done.stdout
    assert "failed calls" not in done.stdout


async def test_top_across_the_cluster(ray_cluster: RayCluster) -> None:
    ray_cluster.ensure_two_nodes()
    async with ray_provider(uuid.uuid4().hex) as provider:
        servers = await asyncio.gather(provider.start(), provider.start())
        async with AsyncEchoEnv(servers[0].endpoint) as env:
            await env.reset()
            for _ in range(3):
                await env.step(EchoAction(message="across"))
            top = ["top", "--ray", "--once", "--interval", "0.2", "--ray-address"]
            shown = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "openenv", *top, ray_cluster.address],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "COLUMNS": "200"},
            )
    assert shown.returncode == 0, shown.stderr
    rows = {line.split("│")[2].strip(): line for line in shown.stdout.splitlines() if "│" in line}
    first, second = (server.id.split("/")[1] for server in servers)
    assert [cell.strip() for cell in rows[first].split("│")[3:4]] == ["1"]  # one session
    assert [cell.strip() for cell in rows[second].split("│")[3:4]] == ["0"]
