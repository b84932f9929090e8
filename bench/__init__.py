"""Benchmark scripts. ``engram bench`` (``make bench``) runs them and writes BENCHMARKS.md."""
