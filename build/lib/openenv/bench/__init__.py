"""Throughput measurement: our client against the baselines it is judged by."""
