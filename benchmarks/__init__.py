"""Benchmark scripts: each prints a table of ratios measured interleaved in one run."""
