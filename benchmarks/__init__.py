"""Benchmarks of leaps: kernel and step latency, Table 4, quality in the toy world.

Run each from the repository root as a module, e.g. ``python -m benchmarks.table4 --quick``;
the CPU micro-benchmarks run with ``python -m pytest benchmarks/ --benchmark-only``.
Results go to benchmarks/results/ (every JSON carries :func:`benchmarks.environment.environment`).
"""
