"""Benchmarks of netdyn against conventional baselines run in the same process (``python -m benchmarks.run``)."""
