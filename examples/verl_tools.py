"""openenv envs as verl tools, loaded and called the way verl's ToolAgentLoop does it.

verl's own ``initialize_tools_from_config`` reads ``examples/verl_tools.yaml`` and makes the
tools (``openenv.integrations.verl.OpenEnvTool``); then, as ToolAgentLoop does for every call
the model makes, each call is ``create(create_kwargs=...)``, ``execute(instance_id, args)``,
``release(instance_id)``, many at once on one event loop. One server is killed under a live
instance: that call is answered with the error, and later calls get replacement sessions.

    python examples/verl_tools.py [--summary out.json]

Needs verl importable (the trainer venv: ``make trainer-venv``). verl's rollout workers, its
LLM servers (vLLM/SGLang) and the agent loop itself are not run here: they need GPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from verl.tools.tool_registry import initialize_tools_from_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's envs/ package

from openenv.client.portal import run_sync
from openenv.integrations import verl as openenv_verl

CONFIG = Path(__file__).with_name("verl_tools.yaml")


async def call(tool, arguments: dict, create_kwargs: dict | None = None) -> dict:
    """One tool call, as ToolAgentLoop makes it."""
    instance_id, created = await tool.create(create_kwargs=create_kwargs or {})
    try:
        response, reward, metrics = await tool.execute(instance_id, arguments)
        total = await tool.calc_reward(instance_id)
    finally:
        await tool.release(instance_id)
    return {
        "created": created.text,
        "text": response.text,
        "reward": reward,
        "total": total,
        "metrics": metrics,
    }


async def killed_call(tool) -> dict:
    instance_id, _ = await tool.create(create_kwargs={})
    try:
        sessions = tool._sessions  # the pool behind the tool, to kill its servers
        killed = [server.id for server in sessions.pool.servers]
        for server in sessions.pool.servers:
            await asyncio.to_thread(run_sync, sessions.pool.provider.kill(server))
        response, _, metrics = await tool.execute(instance_id, {"message": "void"})
    finally:
        await tool.release(instance_id)
    return {"killed": killed, "text": response.text, "metrics": metrics}


async def run() -> dict:
    tools = {tool.name: tool for tool in initialize_tools_from_config(CONFIG)}
    schemas = {name: tool.tool_schema.model_dump(exclude_none=True) for name, tool in tools.items()}
    echo, shell = tools["echo"], tools["exec"]
    messages = ["hi", "hello", "hello there", "good morning", "a", "abc", "abcdef", "xyz"]
    first = await asyncio.gather(*(call(echo, {"message": m}) for m in messages))
    bad = await call(echo, {"msg": "x"})
    killed = await killed_call(echo)
    after = await asyncio.gather(*(call(echo, {"message": m}) for m in messages))
    solution = "grep -rlw ERROR logs --include='*.log' | wc -l"
    task = await call(shell, {"command": solution}, {"task": "count_errors"})
    sessions = echo._sessions
    return {
        "schemas": schemas,
        "first": first,
        "bad": bad,
        "killed": killed,
        "after": after,
        "task": task,
        "servers_replaced": sessions.pool.stats.servers_replaced,
        "server_ids": sorted(
            {s.id for s in sessions.pool.servers}
            | set(killed["killed"])
            | {s.id for s in shell._sessions.pool.servers}
        ),
        "providers": [echo._sessions.pool.provider, shell._sessions.pool.provider],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, default=None)
    options = parser.parse_args(argv)
    try:
        summary = asyncio.run(run())
    finally:
        openenv_verl.close_all()
    providers = summary.pop("providers")
    summary["closed"] = all(provider.running() == [] for provider in providers)
    print(json.dumps(summary, indent=1))
    if options.summary is not None:
        options.summary.write_text(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
