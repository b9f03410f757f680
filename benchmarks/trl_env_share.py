"""How much of a GRPO step is spent in env calls, through openenv's TRL adapter vs the same env
in-process, and how many env calls per second TRL's tool loop gets with many rollouts at once.

One process, one locally built tiny model (examples/trl_grpo.py: Qwen2-style from a config, a
byte-level BPE tokenizer, a short warm-up so that it calls the tool); then, interleaved, rounds
of ``--steps`` GRPO steps for each variant, each from a copy of the same model:

- ``adapter``: ``EnvironmentFactory(AsyncEchoEnv, LocalProcessProvider(...))``: real sessions
  on echo server processes over unix sockets (16 sessions per server);
- ``in_process``: a plain Python class with the same ``reset`` / ``echo`` / ``get_reward``
  (no server, no socket): the floor.

Every public method of the environment is timed; per step: wall time, time in env calls, env
calls. ``share`` is env time / step wall time; ``calls_per_s`` is calls / env time (the rate
TRL's loop gets from the env while it calls it: TRL calls sync tools one rollout after another).

    .venv-trainers/bin/python benchmarks/trl_env_share.py --rollouts 64 --steps 2 --rounds 2

Needs the trainer venv (make trainer-venv). CPU-only; the model is tiny, so generation is cheap
and the env's share is larger than with a real model (an upper bound).
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformers import TrainerCallback
from trl import GRPOTrainer

from envs.echo_env.client import AsyncEchoEnv
from examples.trl_grpo import (
    build_model,
    build_tokenizer,
    grpo_config,
    warm_up,
)
from openenv.integrations.trl import EnvironmentFactory
from openenv.providers.process import LocalProcessProvider

CLOCK = {"env_s": 0.0, "calls": 0}


def timed(cls: type) -> type:
    """A subclass of ``cls`` whose public methods add their time to CLOCK (the signature and
    docstring TRL reads are kept: functools.wraps)."""

    def wrap(method):
        @functools.wraps(method)
        def timed_method(self, *args, **kwargs):
            began = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                CLOCK["env_s"] += time.perf_counter() - began
                CLOCK["calls"] += 1

        return timed_method

    methods = {
        name: wrap(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }
    return type(cls.__name__, (cls,), methods)


class EchoInProcess:
    """The echo env's episode, in this process: the same texts and rewards as the adapter's."""

    def __init__(self) -> None:
        self._rewards: list[float] = []

    def reset(self, **row) -> str:
        self._rewards = []
        return "\n\nEcho environment ready!"

    def echo(self, message: str) -> str:
        """A message to echo back.

        Args:
            message: the message of the EchoAction

        Returns:
            What the environment observed after the action.
        """
        self._rewards.append(len(message) / 10)
        return f"echoed_message: {message}\nmessage_length: {len(message)}"

    def get_reward(self) -> float:
        return float(sum(self._rewards))


class Steps(TrainerCallback):
    """Per training step: wall time, env time and env calls."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._began, self._env, self._calls = time.perf_counter(), CLOCK["env_s"], CLOCK["calls"]

    def on_step_end(self, args, state, control, **kwargs):
        wall = time.perf_counter() - self._began
        env = CLOCK["env_s"] - self._env
        calls = CLOCK["calls"] - self._calls
        self.rows.append({"wall_s": wall, "env_s": env, "calls": calls, "share": env / wall})


def run(variant: str, model, tokenizer, rollouts: int, steps: int) -> list[dict]:
    from datasets import Dataset

    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": "Say something to the echo tool."}]}] * 256
    )
    factory = None
    if variant == "adapter":
        factory = EnvironmentFactory(
            AsyncEchoEnv,
            LocalProcessProvider("envs.echo_env"),
            max_sessions=rollouts,
            sessions_per_server=16,
            tools="actions",
        )
        environment = timed(factory.environment_class)
    else:
        environment = timed(EchoInProcess)
    steps_cb = Steps()
    callbacks = [steps_cb] + ([factory.callback()] if factory else [])
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = GRPOTrainer(
            model=model,
            args=grpo_config(output_dir, steps + 1, rollouts),  # the first step warms up
            train_dataset=dataset,
            processing_class=tokenizer,
            environment_factory=environment,
            callbacks=callbacks,
        )
        trainer.train()
    if factory is not None:
        factory.close()
    return steps_cb.rows[1:]


def summary(rows: list[dict]) -> dict:
    def spread(key: str) -> dict:
        values = [row[key] for row in rows]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    calls_per_s = [row["calls"] / row["env_s"] for row in rows if row["env_s"] > 0]
    return {
        "steps": len(rows),
        "step_wall_s": spread("wall_s"),
        "env_s_per_step": spread("env_s"),
        "env_calls_per_step": spread("calls"),
        "share": spread("share"),
        "calls_per_s": {
            "median": statistics.median(calls_per_s),
            "min": min(calls_per_s),
            "max": max(calls_per_s),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    options = parser.parse_args()
    import random

    import torch
    from transformers.utils import get_json_schema

    load_before = os.getloadavg()
    random.seed(0)
    torch.manual_seed(0)
    schema = [get_json_schema(EchoInProcess().echo)]
    tokenizer = build_tokenizer(schema)
    model = build_model(tokenizer)
    warm_up(model, tokenizer, schema, 150)
    rows: dict[str, list[dict]] = {"adapter": [], "in_process": []}
    for _ in range(options.rounds):  # interleaved: the load on the machine hits both alike
        for variant in rows:
            model_copy = copy.deepcopy(model)
            rows[variant] += run(variant, model_copy, tokenizer, options.rollouts, options.steps)
    result = {
        "command": " ".join([".venv-trainers/bin/python", *sys.argv]),
        "rollouts": options.rollouts,
        "load_before": load_before,
        "variants": {variant: summary(r) for variant, r in rows.items()},
        "raw": rows,
    }
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(json.dumps(result["variants"], indent=1))
    if options.out is not None:
        options.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
