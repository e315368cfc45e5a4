"""Benchmarks: locust load, perf_analyzer, the naive peer, result tables and plots."""
