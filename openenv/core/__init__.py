"""Not this project's: ``openenv.core`` is upstream OpenEnv's package (``openenv-core`` on PyPI).

Both distributions install an import package called ``openenv``, and this one (``openenv-rl``)
has no ``core``. Code written for upstream, such as TRL's
``trl.experimental.async_grpo.openenv_harness``, lands here; importing it fails with a message
that says so and what to use instead, rather than a bare ``No module named 'openenv.core'``.
"""

raise ModuleNotFoundError(
    "openenv.core is upstream OpenEnv's module (the openenv-core distribution), but the "
    "`openenv` package installed here is openenv-rl, which shares its import name and has no "
    "`core`. The two cannot live in one environment. To train with TRL against openenv-rl "
    "envs, use openenv.integrations.trl (EnvironmentFactory for "
    "GRPOTrainer(environment_factory=...), or reward_function); see docs/integrations/trl.md. "
    "To run upstream's harness (e.g. trl.experimental.async_grpo.openenv_harness), install "
    "openenv-core in a separate environment without openenv-rl.",
    name="openenv.core",
)
