"""Metrics, traces and logs, below every other layer: the plain counters that hot paths bump
(:mod:`~openenv.observability.timings`), their Prometheus families (``prometheus``, imported
only where metrics are exposed), OpenTelemetry spans (``tracing``) and JSON log lines
(``logs``). Nothing here imports the client, server, providers or pools.
"""
