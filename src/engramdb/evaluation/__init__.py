"""Retrieval-quality measurements over public data sets (benchmarks, not the engine).

They drive a real database through its storage and its public ``recall`` in the
same process, so a baseline and the engine are measured on identical data.
"""
