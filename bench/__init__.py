"""Benchmarks of lens_steer against the naive ways and an independent library (``python -m bench``).

One module per comparison (``collect``, ``scoring``, ``sweep``, ``overhead``, ``reference``), each
with a ``run(...)`` that times both sides alternately in this process and returns its headline
numbers and details; ``report`` holds the targets and the markdown table. See BENCHMARKS.md.
"""
