"""The one timing primitive: calls timed honestly, interleaved, warmed up, within a budget.

Every measurement that times anything (the sweep's cost cell, the studies) goes through
`interleaved`: the ways being compared are warmed up, then timed in rounds where each way runs
once and the order rotates from round to round (for two ways: A B, B A, A B, ...), so a slow
stretch of the machine falls on all of them alike. A call is timed by `timed`: CUDA events with
the device synchronised on a GPU, a wall clock around the call on the CPU. A budget bounds slow
calls: a loop stops once it has spent `budget_s`, but only after its least number of calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

WARMUP = 3
REPEATS = 15
MIN_REPEATS = 3
BUDGET_S = 5.0


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds `fn` takes, all its queued device work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s


def bounded(most: int, least: int, fn: Callable[[int], object], budget_s: float) -> int:
    """Call fn(0), fn(1), ... up to `most` times, stopping after `least` calls once `budget_s`
    seconds are spent; returns the number of calls made."""
    start = time.perf_counter()
    for i in range(most):
        fn(i)
        if i + 1 >= least and time.perf_counter() - start > budget_s:
            return i + 1
    return most


@dataclass(frozen=True)
class Timings:
    """Seconds of each timed call, per way, in the order they ran."""

    seconds: dict[str, list[float]]

    def median(self, way: str) -> float:
        return statistics.median(self.seconds[way])

    def mean(self, way: str) -> float:
        return statistics.fmean(self.seconds[way])

    def ratio(self, way: str, reference: str) -> float:
        """Median time of `way` over the median time of `reference`."""
        return self.median(way) / self.median(reference)

    @property
    def rounds(self) -> int:
        return min(len(v) for v in self.seconds.values())


def interleaved(
    ways: Mapping[str, Callable[[], object]],
    device: torch.device,
    *,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    min_repeats: int = MIN_REPEATS,
    budget_s: float = BUDGET_S,
) -> Timings:
    """Warm every way up (`warmup` rounds, at least one), then time up to `repeats` rounds of one
    call each, the order rotating by one every round; both loops stop early once `budget_s` is
    spent (after one warm-up round and `min_repeats` timed rounds)."""
    names = list(ways)
    bounded(warmup, 1, lambda _: [ways[n]() for n in names], budget_s)
    seconds: dict[str, list[float]] = {n: [] for n in names}

    def round_(i: int) -> None:
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(timed(ways[name], device))

    bounded(repeats, min_repeats, round_, budget_s)
    return Timings(seconds)
