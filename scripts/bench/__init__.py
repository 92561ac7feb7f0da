"""The benchmark suite: ``scripts/bench/run [name ...]`` (see docs/PERFORMANCE.md)."""
