"""Timing and memory probes shared by the benchmarks: alternating repeats, medians, ratios.

Both sides of a comparison run in the same process, one after the other, several rounds; the
order rotates every round (A B, B A, ...; with three sides A B C, B C A, C A B) so that each side
takes each slot equally often and a slow drift of the machine (another job starting, thermal
throttling) hits all sides alike. Ratios are taken per round, then their median.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

Clock = Callable[[], float]
_LIBRARIES = (
    "torch",
    "transformer-lens",
    "transformers",
    "numpy",
    "steering-vectors",
    "lens-steer",
)


@dataclass(frozen=True)
class Timed:
    """The wall times of one side over the rounds, and what its last call returned."""

    seconds: tuple[float, ...]
    last: Any = field(default=None, repr=False, compare=False)

    @property
    def median(self) -> float:
        return float(statistics.median(self.seconds))

    def to_json(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": min(self.seconds),
            "max_s": max(self.seconds),
            "seconds": list(self.seconds),
            "repeats": len(self.seconds),
        }


def alternate(
    sides: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    clock: Clock = time.perf_counter,
) -> dict[str, Timed]:
    """Time each side once per round for ``repeats`` rounds, rotating the order every round.

    Args:
        sides: ``{name: zero-argument callable}``.
        repeats: rounds (each side runs ``repeats`` times).
        clock: the timer (injectable for tests).

    Example:
        >>> timed = alternate({"naive": lambda: sum(range(10**5)), "ours": lambda: 0}, 3)
        >>> len(timed["naive"].seconds)
        3
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not sides:
        raise ValueError("alternate: no sides to time")
    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    last: dict[str, Any] = {}
    for round_index in range(repeats):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            gc.collect()
            start = clock()
            last[name] = sides[name]()
            seconds[name].append(clock() - start)
    return {name: Timed(tuple(seconds[name]), last[name]) for name in names}


def timings_json(
    timed: Mapping[str, Timed], ratio: tuple[str, str] | None = None
) -> dict[str, Any]:
    """``{side: its times and median}``, plus ``"ratios"`` of ``ratio = (baseline, ours)``."""
    out: dict[str, Any] = {name: timing.to_json() for name, timing in timed.items()}
    if ratio is not None:
        out["ratios"] = ratios_json(timed[ratio[0]], timed[ratio[1]])
    return out


def paired_ratios(baseline: Timed, ours: Timed) -> list[float]:
    """``baseline / ours`` of each round: the two calls of a round ran back to back."""
    if len(baseline.seconds) != len(ours.seconds):
        raise ValueError("paired_ratios: the sides ran a different number of rounds")
    if min(ours.seconds) <= 0:
        raise ValueError("paired_ratios: the measured side took no time")
    return [b / o for b, o in zip(baseline.seconds, ours.seconds, strict=True)]


def speedup(baseline: Timed, ours: Timed) -> float:
    """Median over rounds of ``baseline / ours``: above 1 means ours is faster.

    Each round runs both sides back to back, so a slow minute of a shared machine slows both
    calls of the round and largely cancels in its ratio; a ratio of medians would mix calls from
    different minutes.
    """
    return float(statistics.median(paired_ratios(baseline, ours)))


def ratios_json(baseline: Timed, ours: Timed) -> dict[str, Any]:
    """Both ways of forming the ratio, for the results file."""
    return {
        "median_of_paired_ratios": speedup(baseline, ours),
        "ratio_of_medians": baseline.median / ours.median,
        "paired_ratios": paired_ratios(baseline, ours),
    }


def time_once(fn: Callable[[], Any], *, clock: Clock = time.perf_counter) -> Timed:
    """One timed call (for a side that is too slow to repeat)."""
    gc.collect()
    start = clock()
    out = fn()
    return Timed((clock() - start,), out)


# --------------------------------------------------------------------------------------------
# Memory: bytes held by tensors, and the process's peak resident memory (Linux).
# --------------------------------------------------------------------------------------------


def tensor_bytes(obj: Any) -> int:
    """Total bytes of the tensors in a tensor, mapping, sequence or ``ActivationCache``."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping) or hasattr(obj, "cache_dict"):
        values = obj.cache_dict.values() if hasattr(obj, "cache_dict") else obj.values()
        return sum(tensor_bytes(value) for value in values)
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(value) for value in obj)
    return 0


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field_name} line")


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so an earlier peak cannot hide a later one."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class PeakRss:
    """Resident memory before a call and its peak during the call, in MiB."""

    before_mib: float
    peak_mib: float

    @property
    def delta_mib(self) -> float:
        return self.peak_mib - self.before_mib

    def to_json(self) -> dict[str, float]:
        return {
            "before_mib": self.before_mib,
            "peak_mib": self.peak_mib,
            "delta_mib": self.delta_mib,
        }


def peak_rss(fn: Callable[[], Any]) -> tuple[PeakRss, Any]:
    """Peak resident memory of the process while ``fn`` runs (Linux; resets ``VmHWM`` first).

    Raises:
        OSError: when ``/proc/self/clear_refs`` cannot reset the high-water mark.
    """
    _release_free_heap()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM) to now
    out = fn()
    peak = _status_kib("VmHWM")
    return PeakRss(before / 1024, peak / 1024), out


# --------------------------------------------------------------------------------------------
# Where the numbers were measured.
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch threads, memory, OS and Python."""
    try:
        total_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory_gib: float | None = round(total_kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        memory_gib = None
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(affinity) if affinity is not None else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": memory_gib,
        "cuda": torch.cuda.is_available(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that produce the numbers (``None``: not installed)."""
    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(repo: Path) -> str | None:
    """``HEAD`` of the repository, with ``+dirty`` when the tree has changes; ``None`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
