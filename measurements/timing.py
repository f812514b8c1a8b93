"""The one timing primitive: calls timed honestly, interleaved, warmed up, within a budget.

Every measurement that times anything (the sweep's cost cell, the studies) goes through
`interleaved`: the ways being compared are warmed up, then timed in rounds where each way runs
once and the order rotates from round to round (for two ways: A B, B A, A B, ...), so a slow
stretch of the machine falls on all of them alike. A call is timed by `timed`: CUDA events with
the device synchronised on a GPU, a clock around the call on the CPU (the wall clock; a test may
pass a fake one). A budget bounds slow calls: a loop stops once it has spent `budget_s`, but only
after its least number of calls.

Timing that knows its own noise (the cost cell): the ratio of two ways' mean times gets a 95%
interval from the rounds, each round a pair (`Timings.interval`); a third way, a second copy of
the reference, gives an A/A control ratio that should be 1; and the timed rounds record how long
this process's threads waited for a CPU (`Timings.waiting`). A comparison is `steady` when the
interval lies within +-`TOLERANCE` of the ratio, the A/A ratio within 1 +- `TOLERANCE` and the
wait below `CONTENTION`; `interleaved(..., steady=..., extra=n)` times up to n more blocks of
rounds, pooled with the first, while it is not. The wait catches what the other two cannot: on
an oversubscribed CPU every step stalls alike while its threads queue for a core, which pulls
every ratio towards 1 with a narrow interval and an A/A ratio of 1.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from scipy import stats

WARMUP = 3
REPEATS = 15
MIN_REPEATS = 3
BUDGET_S = 5.0
LEVEL = 0.95  # the intervals' coverage
TOLERANCE = 0.1  # steady: interval within ratio x (1 +- 0.1), A/A ratio within 1 +- 0.1
CONTENTION = 0.1  # steady: threads waited for a CPU less than 0.1 s per second of timed rounds

Seconds = Callable[[], float]


def queued_seconds() -> float:
    """Seconds this process's threads have spent runnable but waiting for a CPU, in total (Linux:
    the run-queue field of /proc/self/task/*/schedstat; nan where there is none)."""
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return math.nan
    total = 0
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that ended while being read
            continue
    return total / 1e9


@dataclass(frozen=True)
class Clock:
    """What timing reads: the time, and this process's total wait for a CPU (tests fake both)."""

    now: Seconds = time.perf_counter
    queued: Seconds = queued_seconds


WALL = Clock()


def timed(
    fn: Callable[[], object], device: torch.device, now: Seconds = time.perf_counter
) -> float:
    """Seconds `fn` takes, all its queued device work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    start_s = now()
    fn()
    return now() - start_s


def bounded(
    most: int,
    least: int,
    fn: Callable[[int], object],
    budget_s: float,
    now: Seconds = time.perf_counter,
) -> int:
    """Call fn(0), fn(1), ... up to `most` times, stopping after `least` calls once `budget_s`
    seconds are spent; returns the number of calls made."""
    start = now()
    for i in range(most):
        fn(i)
        if i + 1 >= least and now() - start > budget_s:
            return i + 1
    return most


@dataclass(frozen=True)
class Timings:
    """Seconds of each timed call, per way, in the order they ran (call i of every way: round i),
    and `waiting`: seconds this process's threads waited for a CPU per second of timed rounds
    (summed over threads, so it can pass 1; nan when not measured)."""

    seconds: dict[str, list[float]]
    waiting: float = math.nan

    def median(self, way: str) -> float:
        return statistics.median(self.seconds[way])

    def mean(self, way: str) -> float:
        return statistics.fmean(self.seconds[way])

    def ratio(self, way: str, reference: str) -> float:
        """Median time of `way` over the median time of `reference`."""
        return self.median(way) / self.median(reference)

    def mean_ratio(self, way: str, reference: str) -> float:
        """Mean time of `way` over the mean time of `reference` (R = a_bar / b_bar)."""
        return self.mean(way) / self.mean(reference)

    def interval(self, way: str, reference: str, level: float = LEVEL) -> tuple[float, float]:
        """A `level` interval for the ratio of mean times R = a_bar / b_bar over n paired rounds.

        The ratio estimator's linearised standard error, se = s_d / (sqrt(n) b_bar) with s_d the
        sample standard deviation of d_i = a_i - R b_i (Cochran, Sampling Techniques, 3rd ed.,
        1977, §6.3-6.4), and a Student-t quantile on n - 1 degrees of freedom for small n:
        R -+ t_{(1 + level) / 2, n - 1} se. Pairing by round: a slow stretch of the machine that
        slows both calls of a round alike moves a_i and R b_i together, and largely cancels in
        d_i. (nan, nan) for fewer than two rounds.
        """
        a, b = self.seconds[way], self.seconds[reference]
        n = len(a)
        if n < 2:
            return math.nan, math.nan
        r = self.mean_ratio(way, reference)
        spread = statistics.stdev(ai - r * bi for ai, bi in zip(a, b, strict=True))
        t = float(stats.t.ppf((1 + level) / 2, n - 1))
        half = t * spread / (math.sqrt(n) * statistics.fmean(b))
        return r - half, r + half

    def steady(self, way: str, reference: str, control: str) -> bool:
        """The `way`/`reference` interval within its ratio x (1 -+ `TOLERANCE`), the A/A ratio
        `control`/`reference` (two copies of one call) within 1 -+ `TOLERANCE`, and the wait
        for a CPU below `CONTENTION` (where it was measured)."""
        r = self.mean_ratio(way, reference)
        lo, hi = self.interval(way, reference)
        aa = self.mean_ratio(control, reference)
        return (
            (1 - TOLERANCE) * r <= lo
            and hi <= (1 + TOLERANCE) * r
            and abs(aa - 1) <= TOLERANCE
            and not self.waiting >= CONTENTION  # nan (not measured) passes
        )

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
    steady: Callable[[Timings], bool] | None = None,
    extra: int = 0,
    clock: Clock = WALL,
) -> Timings:
    """Warm every way up (`warmup` rounds, at least one), then time up to `repeats` rounds of one
    call each, the order rotating by one every round; both loops stop early once `budget_s` is
    spent (after one warm-up round and `min_repeats` timed rounds).

    With `steady`, while `steady(timings)` is false up to `extra` more blocks of rounds are timed
    (each bounded like the first, the rotation continuing) and pooled with the earlier ones; a
    block starts only while the timed rounds so far took less than (1 + extra) x `budget_s`.
    """
    names = list(ways)
    bounded(warmup, 1, lambda _: [ways[n]() for n in names], budget_s, clock.now)
    seconds: dict[str, list[float]] = {n: [] for n in names}

    def round_(_: int) -> None:
        shift = len(seconds[names[0]]) % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(timed(ways[name], device, clock.now))

    start, queued = clock.now(), clock.queued()

    def so_far() -> Timings:
        spent = clock.now() - start
        return Timings(seconds, (clock.queued() - queued) / spent if spent > 0 else math.nan)

    bounded(repeats, min_repeats, round_, budget_s, clock.now)
    for _ in range(extra):
        if steady is None or steady(so_far()) or clock.now() - start >= (1 + extra) * budget_s:
            break
        bounded(repeats, min_repeats, round_, budget_s, clock.now)
    return so_far()
