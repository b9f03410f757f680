"""TRL: openenv envs as ``GRPOTrainer(environment_factory=...)`` environments.

::

    factory = EnvironmentFactory(AsyncEchoEnv, LocalProcessProvider("envs.echo_env"),
                                 max_sessions=8)
    trainer = GRPOTrainer(model, args=args, train_dataset=data,
                          environment_factory=factory, callbacks=[factory.callback()])

TRL calls ``factory()`` once per rollout it runs at once and keeps the instances; each
instance has a sync ``reset(**row)``, one tool method per action kind of the env (see
:mod:`openenv.integrations.tools`) and ``get_reward()``, and no other public method (TRL
exposes every public method to the model as a tool). The sessions behind the instances come
from one :class:`~openenv.EnvPool` (``max_sessions`` sessions, ``sessions_per_server`` per
server) that starts on the first ``reset``:

- an instance takes a session at ``reset`` and gives it back at its next ``reset``; a session
  whose connection dropped or whose server died is reopened (on a replacement server if need
  be) as it is given back, so a dead server costs the rollouts that were on it, not the run;
- a tool call that fails (bad arguments, the env refused, the session broke) raises
  :class:`~openenv.integrations.tools.ToolCallError`, which TRL hands to the model as the
  call's result and counts as a tool failure;
- the callback closes every session and server when training ends (so does
  :meth:`EnvironmentFactory.close`, and an exit hook if neither ran).

Also here, for trainers that do not use ``environment_factory``: :func:`reward_function`, an
async reward function scoring each completion by one env step.

transformers is imported only by the callbacks; the rest needs neither it nor TRL.
"""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from openenv.client.async_client import AsyncEnvClient
from openenv.client.portal import run_sync
from openenv.exceptions import OpenEnvError, PoolError
from openenv.integrations.sessions import (
    RESET_ATTEMPTS,
    EpisodeSession,
    Sessions,
    Where,
    provider_of,
)
from openenv.integrations.tools import ToolCallError, ToolSpec, observation_text
from openenv.launch.pool import EnvPool, PoolStats
from openenv.types import Action, Observation

__all__ = [
    "EnvironmentFactory",
    "ToolCallError",
    "reward_function",
    "rollout_function",
]

ClientT = TypeVar("ClientT", bound=AsyncEnvClient[Any, Any, Any])

# Fields of a dataset row that always reach the env's reset when present.
_RESET_FIELDS = ("seed", "episode_id")


class _TRLEnvironment:
    """What every TRL environment class made by :class:`EnvironmentFactory` shares. Its public
    methods are exactly ``reset``, ``get_reward`` and the tools (TRL exposes every other
    public method to the model)."""

    _sessions: Sessions[Any]
    _reset_fields: tuple[str, ...]
    _render: Callable[[Observation], str]

    def __init__(self) -> None:
        self._episode = EpisodeSession(self._sessions)

    def reset(self, **row: Any) -> str:
        """Start an episode for one dataset row and return the env's first observation as
        text (TRL appends it to the prompt). Only the row's ``seed`` and ``episode_id`` and
        the factory's ``reset_fields`` reach the env."""
        options = {k: row[k] for k in (*_RESET_FIELDS, *self._reset_fields) if k in row}
        return "\n\n" + self._render(self._episode.start(options))

    def get_reward(self) -> float:
        """The episode's return: the sum of the env's rewards since ``reset``."""
        return float(sum(self._episode.rewards))

    def _call(self, spec: ToolSpec, arguments: Mapping[str, Any]) -> str:
        return self._render(self._episode.call(spec, arguments))


def _tool_method(spec: ToolSpec) -> Callable[..., str]:
    def tool(self: _TRLEnvironment, **arguments: Any) -> str:
        return self._call(spec, arguments)

    tool.__name__ = tool.__qualname__ = spec.name
    tool.__doc__ = spec.docstring()
    signature = spec.signature()
    tool.__signature__ = signature  # type: ignore[attr-defined]
    tool.__annotations__ = {
        name: p.annotation for name, p in signature.parameters.items() if name != "self"
    }
    tool.__annotations__["return"] = str
    return tool


class EnvironmentFactory(Generic[ClientT]):
    """``environment_factory`` for TRL's ``GRPOTrainer``: ``factory()`` makes one environment
    instance (TRL makes one per rollout it runs at once).

    Args:
        client_cls: the env's async client, e.g. ``AsyncEchoEnv``.
        where: a :class:`~openenv.Provider` that starts servers (``LocalProcessProvider``,
            ``LocalDockerProvider``, …), or the endpoint(s) of servers already running.
        max_sessions: sessions in the pool: at least the rollouts TRL runs at once (its
            generation batch size).
        sessions_per_server: sessions sharing one server.
        reset_fields: dataset columns passed to the env's ``reset`` as options, besides
            ``seed`` and ``episode_id``.
        tools: which tools the model gets: ``"auto"`` (the env's declared ``@tool`` methods,
            then one per action kind not named like one of them), ``"actions"`` (one per
            action kind only; starts no server until the first reset) or ``"declared"``.
            Listing declared tools asks a session, so with ``"auto"`` and ``"declared"`` the
            servers start here.
        tool_name: the tool's name for an env with one action kind (default: from the action
            type, ``EchoAction`` -> ``echo``).
        render: the text the model reads of an observation (default:
            :func:`~openenv.integrations.tools.observation_text`).
        timeout: seconds each env call may take.
    """

    def __init__(
        self,
        client_cls: type[ClientT],
        where: Where,
        *,
        max_sessions: int,
        sessions_per_server: int = 16,
        reset_fields: Sequence[str] = (),
        tools: str = "auto",
        tool_name: str | None = None,
        render: Callable[[Observation], str] = observation_text,
        timeout: float | None = 60.0,
    ) -> None:
        self.client_cls = client_cls
        self._sessions: Sessions[ClientT] = Sessions(
            client_cls,
            where,
            max_sessions=max_sessions,
            sessions_per_server=sessions_per_server,
            timeout=timeout,
        )
        self.tools = self._sessions.tools(tools, tool_name)
        namespace: dict[str, Any] = {
            "__doc__": f"A {client_cls.__name__} session for one TRL rollout.",
            "_sessions": self._sessions,
            "_reset_fields": tuple(reset_fields),
            "_render": staticmethod(render),
        }
        for spec in self.tools:
            if spec.name in ("reset", "get_reward") or spec.name.startswith("_"):
                raise ValueError(f"an env tool cannot be called {spec.name!r}; pass tool_name=")
            namespace[spec.name] = _tool_method(spec)
        stem = client_cls.__name__.removeprefix("Async")
        self.environment_class: type[_TRLEnvironment] = type(stem, (_TRLEnvironment,), namespace)

    def __call__(self) -> _TRLEnvironment:
        return self.environment_class()

    @property
    def pool(self) -> EnvPool[ClientT]:
        """The pool the sessions come from (its ``stats`` count replaced envs and servers)."""
        return self._sessions.pool

    @property
    def stats(self) -> PoolStats:
        return self._sessions.pool.stats

    @property
    def tool_calls(self) -> int:
        """Tool calls TRL made on this factory's environments so far."""
        return self._sessions.tool_calls

    @property
    def tool_failures(self) -> int:
        """Of those, the calls that failed (reported to the model, training went on)."""
        return self._sessions.tool_failures

    def callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that closes every session and server of this
        factory when training ends."""
        return _closing_callback(self.close)

    def close(self) -> None:
        """Close every session and stop every server. Idempotent."""
        self._sessions.close()


def _closing_callback(close: Callable[[], None]) -> Any:
    from transformers import TrainerCallback

    class CloseEnvs(TrainerCallback):  # type: ignore[misc]
        """Closes the env sessions and servers at the end of training."""

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            close()

    return CloseEnvs()


# TRL's event loop for async functions: the pools below are made on it and closed on it.


class _LoopPool(Generic[ClientT]):
    """A pool made on the loop that first uses it (TRL's async loop), and closed there."""

    def __init__(self, make: Callable[[], EnvPool[ClientT]]) -> None:
        self._make = make
        self._pool: EnvPool[ClientT] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Future[EnvPool[ClientT]] | None = None

    async def get(self) -> EnvPool[ClientT]:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError(
                "this env pool belongs to another event loop: TRL's async reward loop made it"
            )
        if self._starting is None:
            self._loop = loop
            self._starting = loop.create_future()
            try:
                pool = await self._make().start()
            except BaseException as exc:
                self._starting.set_exception(exc)
                self._starting = None
                raise
            self._pool = pool
            self._starting.set_result(pool)
            atexit.register(self.close)  # runs before TRL's own exit hook stops its loop
        return await asyncio.shield(self._starting)

    def close(self) -> None:
        """Close the pool on its loop (from any other thread), while that loop still runs."""
        pool, loop = self._pool, self._loop
        self._pool = None
        if pool is not None and loop is not None:
            _close_on(loop, pool)


def _close_on(loop: asyncio.AbstractEventLoop, pool: EnvPool[Any]) -> None:
    if loop.is_closed():
        return
    if not loop.is_running():  # its thread stopped it: drive it here, once more
        loop.run_until_complete(pool.close())
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        loop.create_task(pool.close())
    else:
        asyncio.run_coroutine_threadsafe(pool.close(), loop).result(timeout=60)


def reward_function(
    client_cls: type[ClientT],
    where: Where,
    to_action: Callable[[Any], Action],
    *,
    max_sessions: int,
    sessions_per_server: int = 16,
    reset_fields: Sequence[str] = (),
    timeout: float | None = 60.0,
    name: str | None = None,
) -> Any:
    """An async reward function for ``GRPOTrainer(reward_funcs=[...])``: each completion is
    one episode, ``reset`` then one ``step(to_action(completion))``, and its reward is the
    step's (0.0 when the env gives none; None, which TRL ignores, when the env failed).

    TRL runs async reward functions on an event loop of its own in a daemon thread; the pool is
    made there on the first call, and its callback (``reward.callback()``) closes it there when
    training ends, before TRL stops that loop. ``reward.close()`` does the same by hand.
    """
    pool = _LoopPool(
        lambda: EnvPool(
            client_cls,
            provider_of(where),
            max_sessions,
            sessions_per_server=sessions_per_server,
            timeout=timeout,
            show_progress=False,
        )
    )
    fields = (*_RESET_FIELDS, *reset_fields)

    async def score(completion: Any, row: Mapping[str, Any]) -> float | None:
        envs = await pool.get()
        try:
            async with envs.acquire() as env:
                await env.reset(**{k: row[k] for k in fields if row.get(k) is not None})
                result = await env.step(to_action(completion))
        except OpenEnvError:
            return None
        return 0.0 if result.reward is None else float(result.reward)

    async def reward(completions: list[Any], **columns: Any) -> list[float | None]:
        rows = [
            {k: v[i] for k, v in columns.items() if isinstance(v, list)}
            for i in range(len(completions))
        ]
        pairs = zip(completions, rows, strict=True)
        scores = await asyncio.gather(*(score(c, r) for c, r in pairs))
        return list(scores)

    reward.__name__ = name or f"{client_cls.__name__.removeprefix('Async').lower()}_reward"
    reward.callback = lambda: _closing_callback(pool.close)  # type: ignore[attr-defined]
    reward.close = pool.close  # type: ignore[attr-defined]
    return reward


def rollout_function(
    client_cls: type[ClientT],
    where: Where,
    to_action: Callable[[str], Action],
    *,
    max_sessions: int,
    max_turns: int = 4,
    sessions_per_server: int = 16,
    render: Callable[[Observation], str] = observation_text,
    generate: Callable[[Any, list[list[int]]], list[list[int]]] | None = None,
    timeout: float | None = 60.0,
) -> Any:
    """A ``rollout_func`` for ``GRPOTrainer``: multi-step episodes, one env step per turn.

    For each prompt TRL passes, an env is reset (TRL gives a rollout_func the prompts only, not
    their rows) and its first observation appended to the prompt; then, up to
    ``max_turns`` times, the model generates a turn (all open episodes in one batch), the env
    takes ``to_action(turn_text)``, and its observation, rendered by the chat template as the
    next user message, is appended to the completion with ``env_mask`` 0 (the model is not
    trained on it) before the next turn. An episode ends when the env says done, after
    ``max_turns`` turns, at ``max_completion_length``, or when its env fails.

    Returns the function, with ``.reward`` (a reward function returning each episode's sum
    of env rewards, passed along as the ``env_reward`` column: put it in ``reward_funcs``) and
    ``.callback()`` (closes the pool when training ends).

    Env calls run concurrently on TRL's async loop when the trainer has one (the pool is made
    and closed there), else on the sync clients' loop. ``generate(trainer, prompt_ids)``
    returns completion ids per prompt; the default calls ``generate`` on the trainer's model
    with its ``generation_config`` (TRL's transformers path; for vLLM pass your own).
    """
    pools = _LoopPool(
        lambda: EnvPool(
            client_cls,
            provider_of(where),
            max_sessions,
            sessions_per_server=sessions_per_server,
            timeout=timeout,
            show_progress=False,
        )
    )
    make_turn = generate or _generate

    def rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        if len(prompts) > max_sessions:
            raise PoolError(
                f"{len(prompts)} rollouts at once but max_sessions={max_sessions}: raise it"
            )
        loop = getattr(trainer, "async_loop", None)

        def run(coroutine: Any) -> Any:
            if loop is None:
                return run_sync(coroutine)
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        tokenizer = trainer.processing_class
        limit = trainer.args.max_completion_length
        episodes = [_Episode(_as_messages(p)) for p in prompts]
        try:
            firsts = run(_open_all(pools, episodes))
            for episode, first in zip(episodes, firsts, strict=True):
                episode.add_observation_to_prompt(render(first))
                episode.prompt_ids = _encode(
                    tokenizer, _chat(tokenizer, episode.messages, generation=True)
                )
            for _ in range(max_turns):
                active = [e for e in episodes if not e.done]
                if not active:
                    break
                turns = make_turn(trainer, [e.prompt_ids + e.completion_ids for e in active])
                actions = []
                for episode, turn in zip(active, turns, strict=True):
                    text = tokenizer.decode(turn, skip_special_tokens=True)
                    episode.add_turn(turn, text)
                    actions.append(to_action(text))
                results = run(_step_all([e.client for e in active], actions))
                for episode, result in zip(active, results, strict=True):
                    episode.take(result, render, tokenizer, limit)
        finally:
            run(_close_all(episodes))
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion_ids[:limit] for e in episodes],
            "logprobs": None,
            "env_mask": [e.env_mask[:limit] for e in episodes],
            "env_reward": [float(sum(e.rewards)) for e in episodes],
        }

    def env_reward(completions: list[Any], env_reward: list[float], **_: Any) -> list[float]:
        """Each episode's sum of env rewards, from the rollout."""
        return list(env_reward)

    rollout.reward = env_reward  # type: ignore[attr-defined]
    rollout.callback = lambda: _closing_callback(pools.close)  # type: ignore[attr-defined]
    rollout.close = pools.close  # type: ignore[attr-defined]
    return rollout


class _Episode:
    """One rollout of :func:`rollout_function`: its messages, tokens, mask and rewards."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.prompt_ids: list[int] = []
        self.completion_ids: list[int] = []
        self.env_mask: list[int] = []
        self.rewards: list[float] = []
        self.done = False
        self.manager: Any = None
        self.client: Any = None

    def add_observation_to_prompt(self, text: str) -> None:
        last = self.messages[-1]
        if text and last.get("role") == "user" and isinstance(last.get("content"), str):
            self.messages[-1] = {**last, "content": f"{last['content']}\n\n{text}"}
        elif text:
            self.messages.append({"role": "user", "content": text})

    def add_turn(self, ids: list[int], text: str) -> None:
        self.completion_ids += ids
        self.env_mask += [1] * len(ids)
        self.messages.append({"role": "assistant", "content": text})

    def take(
        self, result: Any, render: Callable[[Observation], str], tokenizer: Any, limit: int
    ) -> None:
        """The env's answer to the last turn: a reward, maybe the end, else the next message."""
        if isinstance(result, BaseException):
            self.done = True  # the env failed: the episode ends with what it has
            return
        observation = result.observation
        if observation.reward is not None:
            self.rewards.append(float(observation.reward))
        if observation.done or len(self.completion_ids) >= limit:
            self.done = True
            return
        before = _chat(tokenizer, self.messages, generation=False)
        self.messages.append({"role": "user", "content": render(observation)})
        after = _chat(tokenizer, self.messages, generation=True)
        # The chat template's rendering of the observation as the next user turn, up to the
        # assistant's header: not the model's to learn (env_mask 0).
        suffix = after[len(before) :] if after.startswith(before) else after
        ids = _encode(tokenizer, suffix)
        self.completion_ids += ids
        self.env_mask += [0] * len(ids)
        if len(self.completion_ids) >= limit:
            self.done = True


def _as_messages(prompt: Any) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(message) for message in prompt]


def _chat(tokenizer: Any, messages: list[dict[str, Any]], *, generation: bool) -> str:
    text: str = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation
    )
    return text


def _encode(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def _generate(trainer: Any, prompt_ids: list[list[int]]) -> list[list[int]]:
    """One turn per prompt from the trainer's own model (left-padded batch, its generation
    config), cut after the first end-of-sequence token."""
    import torch  # type: ignore[import-not-found]  # the trainer venv's

    tokenizer = trainer.processing_class
    width = max(len(ids) for ids in prompt_ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompt_ids])
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids])
    model = trainer.accelerator.unwrap_model(trainer.model)
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            generation_config=trainer.generation_config,
        )
    eos = set(getattr(trainer, "eos_token_ids", None) or [tokenizer.eos_token_id])
    turns = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
        turns.append(row[:cut])
    return turns


async def _open_all(pools: _LoopPool[Any], episodes: list[_Episode]) -> list[Observation]:
    pool = await pools.get()

    async def open_one(episode: _Episode) -> Observation:
        error: Exception | None = None
        for _ in range(RESET_ATTEMPTS):
            episode.manager = pool.acquire()
            episode.client = await episode.manager.__aenter__()
            try:
                result = await episode.client.reset()
            except OpenEnvError as exc:  # a dead session: give it back (healed), take another
                error = exc
                await _give_back(episode)
                continue
            observation: Observation = result.observation
            return observation
        raise PoolError(f"no working env session after {RESET_ATTEMPTS} tries: {error}")

    return list(await asyncio.gather(*(open_one(e) for e in episodes)))


async def _step_all(clients: list[Any], actions: list[Action]) -> list[Any]:
    return list(
        await asyncio.gather(
            *(c.step(a) for c, a in zip(clients, actions, strict=True)), return_exceptions=True
        )
    )


async def _give_back(episode: _Episode) -> None:
    manager, episode.manager, episode.client = episode.manager, None, None
    if manager is not None:
        await manager.__aexit__(None, None, None)


async def _close_all(episodes: list[_Episode]) -> None:
    await asyncio.gather(*(_give_back(e) for e in episodes), return_exceptions=True)
