"""Cost of one training step of an estimator against backprop, on the same model and batches.

Three learners start from the same seeded initialisation and step through the same batches, drawn
and moved to the device before anything is timed: the estimator, backprop (the reference) and a
second backprop (the A/A control). A step is estimate + optimizer step + the estimator's `update`.
- Priming: a stateful estimator first takes `prime_steps()` steps, timed (`prime_seconds`) and,
  on the replay below, counted (`prime_flops`), both in total and apart from the step figures.
- Time: `measurements.timing.interleaved` over the three learners (warm-up rounds, then timed
  rounds in rotating order; CUDA events on a GPU). Step time is the mean over the timed steps, so
  sentinels and refits count in proportion (the median is kept beside it); the time ratio is the
  ratio of mean times with its 95% interval over the rounds (`Timings.interval`), and the A/A
  ratio is the control's mean time over backprop's. While the interval is wider than +-10% of the
  ratio, the A/A ratio is outside 0.9-1.1 or the process's threads waited for a CPU for 10% of the
  timed time or more (`measurements.timing.Timings.steady`), up to `EXTRA_BLOCKS` more blocks of
  rounds are timed and pooled; a cell still unsteady then is marked `noisy`.
- FLOPs and elementwise work (`measurements.flops.count_work`) per step, over the very steps
  that were timed. A stateful estimator (one that overrides `update`) is replayed: a fresh learner
  with the same seeds takes the same sequence of steps on the same batches, the priming and the
  timed steps inside the counter, so its phases, sentinels and refits count in the proportion in
  which they were timed (the steps are deterministic given seeds and batches); the timed total is
  divided by the number of timed steps. A stateless estimator (backprop among them) does the same
  work every step, so one counted step after the warm-up stands for all.
- Slow steps (a per-example SVD on a CPU can take seconds): every loop stops once it has spent
  `BUDGET_S` seconds (after one warm-up round and `MIN_REPEATS` timed rounds), and a further block
  starts only while the timed rounds took under (1 + `EXTRA_BLOCKS`) x `BUDGET_S` in all.
- Peak memory: `measurements.memory.peak_bytes` of one step beyond what existed before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from estimators import Batch, GradientEstimator, make_estimator
from measurements.context import Context
from measurements.flops import Work, count_work
from measurements.memory import peak_bytes
from measurements.timing import REPEATS, WALL, WARMUP, Clock, interleaved, timed
from measurements.train import Learner, batches
from tasks import Task

EXTRA_BLOCKS = 3
# Learner steps of one cost cell without re-measurement, for the progress bar: three learners
# warmed up and timed, the replay of a stateful estimator, one memory step each.
CALLS = 4 * (WARMUP + REPEATS) + 3
LEARNERS = {"backprop": "backprop", "control": "backprop"}  # beside "estimator": the spec


@dataclass
class _Feed:
    """A learner that takes its next pre-drawn batch at each call, with its own noise."""

    learner: Learner
    batches: Sequence[Batch]
    noise: torch.Generator
    calls: int = 0

    @classmethod
    def create(cls, task: Task, spec: str, seed: int, ctx: Context, data: Sequence[Batch]) -> _Feed:
        learner = Learner.create(task, make_estimator(spec), seed, task.lr, ctx.device)
        return cls(learner, data, torch.Generator(device=ctx.device).manual_seed(seed + 1))

    def __call__(self) -> None:
        self.learner.step(self.batches[self.calls], self.noise)
        self.calls += 1

    def steps(self, count: int) -> None:
        for _ in range(count):
            self()


def _draw(task: Task, ctx: Context, seed: int, count: int) -> list[Batch]:
    """The first `count` batches of the task's seeded batch order, on the device."""
    data = ctx.data(task)
    order = batches(len(data.x_train), task.batch_size, torch.Generator().manual_seed(seed))
    idx = [next(order).to(ctx.device) for _ in range(count)]
    return [(data.x_train[i], data.y_train[i]) for i in idx]


def _stateful(est: GradientEstimator) -> bool:
    """Whether the estimator keeps state between steps: it overrides `update` (the interface's
    `estimate` must leave the state alone, `update` is the only way to change it)."""
    return type(est).update is not GradientEstimator.update


@dataclass(frozen=True)
class _Count:
    """Work of the priming steps (in total) and of `steps` timed steps (in total)."""

    prime: Work
    timed: Work
    steps: int

    @property
    def flops(self) -> float:
        return self.timed.flops / self.steps

    @property
    def elementwise(self) -> float:
        return self.timed.elementwise / self.steps


def _count(replica: _Feed, prime: int, skip: int, timed_steps: int) -> _Count:
    """Work of the steps a learner took, replayed on a fresh `replica`: `prime` priming steps,
    then `skip` (warm-up) steps uncounted, then `timed_steps` counted. A stateless estimator does
    the same work every step, so one step after the warm-up stands for all of them."""
    priming = count_work(partial(replica.steps, prime))
    replica.steps(skip)
    counted = timed_steps if _stateful(replica.learner.estimator) else 1
    return _Count(priming, count_work(partial(replica.steps, counted)), counted)


def measure_cost(
    task: Task, spec: str, ctx: Context, seed: int = 0, clock: Clock = WALL
) -> list[dict[str, Any]]:
    """One `cost.csv` row: the estimator's step cost and its ratios to backprop's.

    `clock` times CPU steps and reads the wait for a CPU (a test fakes it to make a cell
    deterministic).
    """
    specs = {"estimator": spec, **LEARNERS}
    prime = make_estimator(spec).prime_steps()
    data = _draw(task, ctx, seed, prime + WARMUP + REPEATS * (1 + EXTRA_BLOCKS) + 1)
    feeds = {k: _Feed.create(task, s, seed, ctx, data) for k, s in specs.items()}
    prime_seconds = sum(
        (timed(feeds["estimator"], ctx.device, clock.now) for _ in range(prime)), 0.0
    )
    times = interleaved(
        feeds,
        ctx.device,
        steady=lambda t: t.steady("estimator", "backprop", "control"),
        extra=EXTRA_BLOCKS,
        clock=clock,
    )
    n = times.rounds
    work = {
        k: _count(_Feed.create(task, specs[k], seed, ctx, data), p, feeds[k].calls - p - n, n)
        for k, p in (("estimator", prime), ("backprop", 0))
    }
    memory = {k: peak_bytes(feeds[k], ctx.device) for k in work}
    est, bp = work["estimator"], work["backprop"]
    lo, hi = times.interval("estimator", "backprop")
    estimator = feeds["estimator"].learner.estimator
    return [{
        "task": task.name, "estimator": estimator.name, "params": estimator.params_str,
        "device": str(ctx.device),
        "flops": round(est.flops), "elementwise": round(est.elementwise),
        "flop_ratio": est.flops / bp.flops, "elementwise_ratio": est.elementwise / bp.elementwise,
        "step_seconds": times.mean("estimator"),
        "step_seconds_median": times.median("estimator"),
        "time_ratio": times.mean_ratio("estimator", "backprop"), "time_ratio_lo": lo,
        "time_ratio_hi": hi, "aa_ratio": times.mean_ratio("control", "backprop"), "pairs": n,
        "noisy": not times.steady("estimator", "backprop", "control"),
        "prime_flops": est.prime.flops, "prime_seconds": prime_seconds,
        "peak_bytes": memory["estimator"], "memory_ratio": memory["estimator"] / memory["backprop"],
    }]  # fmt: skip
