"""Benchmarks: scripts that print ratio tables (ours vs a baseline, same run). Each module exposes run() -> list[dict]."""
