"""diffjax benchmarks: `python -m bench.run --out bench` (see bench/README.md)."""
