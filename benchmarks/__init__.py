"""Benchmarks and experiments: scripts run as ``python -m benchmarks.<name>`` from the repository root, writing
JSON (with machine, date and commit) to ``benchmarks/results/``. Not part of the installed package."""
