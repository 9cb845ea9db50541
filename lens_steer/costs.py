"""Measure what a block of work costs: wall time and peak memory (for bench/ and analyses/)."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _rss_mb() -> float | None:
    """Current resident set size in MiB (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _max_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


@contextmanager
def measure_cost(
    interval_s: float = 0.05, *, python_heap: bool = False
) -> Iterator[dict[str, float | None]]:
    """Time a block and its peak memory; the yielded dict is filled when the block ends.

    Keys: ``seconds``; ``rss_before_mb`` and ``peak_rss_mb`` (resident memory sampled every
    ``interval_s`` in a thread: the peak of this block alone); ``process_max_rss_mb``
    (``getrusage``: the whole process so far, model loading included); ``cuda_peak_mb`` when
    CUDA is in use (``torch.cuda.max_memory_allocated``); ``python_peak_mb`` with
    ``python_heap=True`` (``tracemalloc``: Python-level allocations only, not torch tensors, and
    it slows a forward pass by about half, so it is off by default).
    """
    cost: dict[str, float | None] = {"rss_before_mb": _rss_mb()}
    peak = [cost["rss_before_mb"] or 0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval_s):
            peak[0] = max(peak[0], _rss_mb() or 0.0)

    sampler = threading.Thread(target=sample, daemon=True)
    tracing = python_heap and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sampler.start()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost["seconds"] = round(time.perf_counter() - start, 3)
        done.set()
        sampler.join()
        if tracing:
            cost["python_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
            tracemalloc.stop()
        if cuda:
            cost["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        peak[0] = max(peak[0], _rss_mb() or 0.0)
        cost["peak_rss_mb"] = round(peak[0], 1) if cost["rss_before_mb"] is not None else None
        cost["process_max_rss_mb"] = round(_max_rss_mb(), 1)
        if cost["rss_before_mb"] is not None:
            cost["rss_before_mb"] = round(cost["rss_before_mb"], 1)
