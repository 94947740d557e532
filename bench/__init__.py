"""Benchmarks of census_receiver: ratios against baselines measured side by side.

``python3 -m bench`` runs every group and prints one table; each group also runs
on its own (``python3 -m bench.verify``, ``python3 -m bench.memory``, ...).
"""
