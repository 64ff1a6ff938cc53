"""Benchmarks: run by hand (python -m tests.perf.bench_recovery), never collected by pytest."""
