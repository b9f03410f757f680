"""Adapters that let RL trainers drive openenv envs: :mod:`openenv.integrations.trl`
(TRL's ``GRPOTrainer``), :mod:`openenv.integrations.skyrl` (skyrl-gym's ``BaseTextEnv``) and
:mod:`openenv.integrations.verl` (verl's tools). Each imports its trainer only where it must;
:mod:`openenv.integrations.tools` is what they share (an env's tools, observations as text).
"""
