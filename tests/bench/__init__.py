"""Benchmark suite: ``python -m tests.bench`` (see ``run.py``); not part of the test suite."""
