"""GRPO with TRL against an openenv env: a few training steps on CPU, nothing downloaded.

The model is a tiny Qwen2-style network made from a config, and its tokenizer a byte-level BPE
trained here with `tokenizers`, using the Qwen2.5 chat template TRL ships (so TRL knows how to
read its tool calls). A short warm-up teaches the model to call the env's tool; then
``GRPOTrainer`` trains it for ``--steps`` steps, each rollout calling the echo env's ``echo``
tool over a real session (server processes from ``LocalProcessProvider``), rewarded by the env
(``get_reward``: the episode's sum of ``len(message) / 10``).

    python examples/trl_grpo.py --steps 3 [--kill-server-at-step 1] [--summary out.json]
    python examples/trl_grpo.py --mode reward   # no tools: an async env reward function
    python examples/trl_grpo.py --mode rollout  # multi-step episodes in a rollout_func
    python examples/trl_grpo.py --mode tools reward rollout  # the three, one after the other

``--kill-server-at-step N`` kills one env server after step N: its sessions are reopened on a
replacement server at the next reset, and training goes on. The summary (JSON) says what
happened: tool calls, failures, rewards logged by TRL, servers replaced.

Needs the trainer venv (``make trainer-venv``: torch CPU, trl, transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing from the hub, ever
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import trl
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    TrainerCallback,
)
from transformers.utils import get_json_schema
from trl import GRPOConfig, GRPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's envs/ package

from envs.echo_env.client import AsyncEchoEnv
from envs.echo_env.models import EchoAction
from openenv.client.portal import run_sync
from openenv.integrations.trl import EnvironmentFactory, reward_function, rollout_function
from openenv.providers.process import LocalProcessProvider

PROMPT = "Say something to the echo tool."
WORDS = ["hi", "hello", "hello there", "good morning", "echo this back to me"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]


def chat_template() -> str:
    """The Qwen2.5 template TRL ships, read from the installed package (TRL matches it to its
    tool-call parser)."""
    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()


def build_tokenizer(tool_schemas: list[dict]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the conversations this run will see."""
    template = chat_template()
    probe = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE()), chat_template=template
    )
    corpus = []
    for word in WORDS:
        conversation = [
            {"role": "user", "content": PROMPT + "\n\nEcho environment ready!"},
            _tool_call(word),
            {"role": "tool", "name": "echo", "content": f"echoed_message: {word}"},
            {"role": "assistant", "content": "Done."},
        ]
        corpus.append(probe.apply_chat_template(conversation, tools=tool_schemas, tokenize=False))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        chat_template=template,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def _tool_call(word: str) -> dict:
    call = {"type": "function", "function": {"name": "echo", "arguments": {"message": word}}}
    return {"role": "assistant", "content": "", "tool_calls": [call]}


def build_model(tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config)


def warm_up(model, tokenizer, tool_schemas: list[dict], steps: int) -> None:
    """Teach the untrained model to answer the prompt with an echo tool call (plain
    next-token training on the completions), so that GRPO has tool calls to reward."""
    prompt = [{"role": "user", "content": PROMPT + "\n\nEcho environment ready!"}]
    rows = []
    for word in WORDS:
        head = tokenizer.apply_chat_template(
            prompt, tools=tool_schemas, add_generation_prompt=True, tokenize=False
        )
        full = tokenizer.apply_chat_template(
            [*prompt, _tool_call(word)], tools=tool_schemas, tokenize=False
        )
        assert full.startswith(head), "the template renders the prompt as a prefix"
        body = full[len(head) :].removesuffix("\n")
        head_ids = tokenizer(head)["input_ids"]
        body_ids = tokenizer(body)["input_ids"]
        rows.append((head_ids + body_ids, len(head_ids)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        ids, start = random.choice(rows)
        tokens = torch.tensor([ids])
        labels = tokens.clone()
        labels[0, :start] = -100
        loss = model(input_ids=tokens, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


class KillServer(TrainerCallback):
    """Kills one env server (SIGKILL) at the end of a training step."""

    def __init__(self, factory: EnvironmentFactory, step: int) -> None:
        self.factory, self.step = factory, step
        self.killed: str | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and self.killed is None:
            server = self.factory.pool.servers[0]
            run_sync(self.factory.pool.provider.kill(server))
            self.killed = server.id


def grpo_config(output_dir: str, steps: int, batch: int) -> GRPOConfig:
    return GRPOConfig(
        output_dir=output_dir,
        use_cpu=True,
        max_steps=steps,
        per_device_train_batch_size=batch,
        num_generations=2,
        max_completion_length=64,
        max_tool_calling_iterations=2,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        dataloader_num_workers=0,
    )


def logged(trainer: GRPOTrainer, key: str) -> list:
    """``key`` of every training step's log line."""
    return [entry.get(key) for entry in trainer.state.log_history if "loss" in entry]


def train_with_tools(options, tokenizer, model, factory, output_dir: str) -> dict:
    """The model calls the env's tools; the env's reward is the only reward."""
    callbacks = [factory.callback()]
    killer = None
    if options.kill_server_at_step is not None:
        killer = KillServer(factory, options.kill_server_at_step)
        callbacks.insert(0, killer)
    trainer = GRPOTrainer(
        model=model,
        args=grpo_config(output_dir, options.steps, BATCH),
        train_dataset=DATASET,
        processing_class=tokenizer,
        environment_factory=factory,
        callbacks=callbacks,
    )
    trainer.train()
    killed = {killer.killed} if killer and killer.killed else set()
    env_name = factory.environment_class.__name__  # TRL logs the env's reward under it
    return {
        "steps": trainer.state.global_step,
        "tool_calls": factory.tool_calls,
        "tool_failures": factory.tool_failures,
        "env_rewards": logged(trainer, f"rewards/{env_name}/mean"),
        "rewards": logged(trainer, "reward"),
        "tool_call_frequency": logged(trainer, "tools/call_frequency"),
        "killed_server": killer.killed if killer else None,
        "envs_replaced": factory.stats.envs_replaced,
        "servers_replaced": factory.stats.servers_replaced,
        "server_ids": sorted({s.id for s in factory.pool.servers} | killed),
        "closed": factory.pool.provider.running() == [],
    }


def train_with_reward_function(options, tokenizer, model, output_dir: str) -> dict:
    """No tools: each completion is one echo step, scored by the env (an async reward function
    on TRL's own event loop)."""
    provider = LocalProcessProvider("envs.echo_env")
    reward = reward_function(
        AsyncEchoEnv,
        provider,
        lambda completion: EchoAction(message=completion[-1]["content"][:64]),
        max_sessions=BATCH,
        sessions_per_server=2,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=grpo_config(output_dir, options.steps, BATCH),
        train_dataset=DATASET,
        processing_class=tokenizer,
        callbacks=[reward.callback()],
    )
    trainer.train()
    return {
        "steps": trainer.state.global_step,
        "env_rewards": logged(trainer, f"rewards/{reward.__name__}/mean"),
        "rewards": logged(trainer, "reward"),
        "closed": provider.running() == [],
    }


def train_with_rollout_function(options, tokenizer, model, output_dir: str) -> dict:
    """Multi-step episodes in a rollout_func: each model turn is an echo step, the env's
    answer goes back into the completion with env_mask 0."""
    provider = LocalProcessProvider("envs.echo_env")
    rollout = rollout_function(
        AsyncEchoEnv,
        provider,
        lambda text: EchoAction(message=text[:64]),
        max_sessions=BATCH,
        sessions_per_server=2,
        max_turns=2,
    )
    seen = {"rollouts": 0, "model_tokens": 0, "env_tokens": 0}

    def counted(prompts, trainer):
        out = rollout(prompts, trainer)
        seen["rollouts"] += len(out["env_mask"])
        seen["model_tokens"] += sum(mask.count(1) for mask in out["env_mask"])
        seen["env_tokens"] += sum(mask.count(0) for mask in out["env_mask"])
        return out

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[rollout.reward],
        args=grpo_config(output_dir, options.steps, BATCH),
        train_dataset=DATASET,
        processing_class=tokenizer,
        rollout_func=counted,
        callbacks=[rollout.callback()],
    )
    trainer.train()
    return {
        "steps": trainer.state.global_step,
        "env_rewards": logged(trainer, "rewards/env_reward/mean"),
        "rewards": logged(trainer, "reward"),
        **seen,
        "closed": provider.running() == [],
    }


BATCH = 4  # rollouts at once: 2 prompts x 2 generations
DATASET = Dataset.from_list([{"prompt": [{"role": "user", "content": PROMPT}]}] * 64)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", nargs="+", choices=["tools", "reward", "rollout"], default=["tools"]
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--kill-server-at-step", type=int, default=None)
    parser.add_argument("--warm-up-steps", type=int, default=150)
    parser.add_argument("--summary", type=Path, default=None)
    options = parser.parse_args(argv)
    random.seed(0)
    torch.manual_seed(0)

    factory = EnvironmentFactory(
        AsyncEchoEnv,
        LocalProcessProvider("envs.echo_env"),
        max_sessions=BATCH,
        sessions_per_server=2,
        tools="actions",  # the echo action (rewarded), not the env's unrewarded echo_message
    )
    tool_schemas = [get_json_schema(factory().echo)]
    tokenizer = build_tokenizer(tool_schemas)
    model = build_model(tokenizer)
    # Every mode starts from the warmed-up model: its turns are short and differ (so do the
    # env's rewards, and GRPO has something to learn from).
    warm_up(model, tokenizer, tool_schemas, options.warm_up_steps)
    summary = {}
    for mode in options.mode:  # one after the other, each training the model further
        with tempfile.TemporaryDirectory() as output_dir:
            if mode == "tools":
                summary[mode] = train_with_tools(options, tokenizer, model, factory, output_dir)
            elif mode == "reward":
                summary[mode] = train_with_reward_function(options, tokenizer, model, output_dir)
            else:
                summary[mode] = train_with_rollout_function(options, tokenizer, model, output_dir)
    factory.close()  # if "tools" did not run: the factory was made for its tool schema
    print(json.dumps(summary))
    if options.summary is not None:
        options.summary.write_text(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
