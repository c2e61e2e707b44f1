"""Benchmarks and studies of frossl-hub (scripts and `python -m benchmarks.<name>` modules)."""
