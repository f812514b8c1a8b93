"""Cost of one training step of an estimator against backprop, on the same model and batches.

Both learners start from the same seeded initialisation and see the same batches; a stateful
estimator is first primed (`prime_steps()` steps) so its steady-state step is measured.
- FLOPs: `FlopCounterMode` over `FLOP_STEPS` steps, divided by their number (phases and refits
  that happen within them are averaged in).
- Time: `WARMUP` steps each, then `REPEATS` steps alternating estimator and backprop (which goes
  first alternates too), the median of each; CUDA events on a GPU.
- Slow steps (a per-example SVD on a CPU can take seconds): each of those loops also stops once
  it has spent `BUDGET_S` seconds, after at least one FLOP step, one warm-up and `MIN_REPEATS`
  timed pairs, so that one cost cell stays within about a minute.
- Peak memory: `runners.memory.peak_bytes` of one step beyond what existed before it.
A step is estimate + optimizer step + estimator update.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from estimators import Batch, make_estimator
from runners.context import Context
from runners.flops import count_flops
from runners.memory import peak_bytes
from runners.timing import timed
from runners.train import Learner, batches
from tasks import Task

WARMUP = 3
REPEATS = 15
FLOP_STEPS = 10
MIN_REPEATS = 3
BUDGET_S = 5.0


def _until(most: int, least: int, fn: Callable[[int], None]) -> int:
    """Call fn(0), fn(1), ... up to `most` times, stopping after `least` once `BUDGET_S` is spent;
    returns the number of calls."""
    start = time.perf_counter()
    for i in range(most):
        fn(i)
        if i + 1 >= least and time.perf_counter() - start > BUDGET_S:
            return i + 1
    return most


def _stream(task: Task, ctx: Context, seed: int) -> Iterator[Batch]:
    data = ctx.data(task)
    for idx in batches(len(data.x_train), task.batch_size, torch.Generator().manual_seed(seed)):
        idx = idx.to(ctx.device)
        yield data.x_train[idx], data.y_train[idx]


def _flops_per_step(step: Callable[[], None]) -> float:
    """FLOPs of one step, averaged over up to `FLOP_STEPS` steps (at least one)."""
    count = 0

    def run() -> None:
        nonlocal count
        count = _until(FLOP_STEPS, 1, lambda _: step())

    return count_flops(run) / count


def measure_cost(task: Task, spec: str, ctx: Context, seed: int = 0) -> list[dict[str, Any]]:
    """One `cost.csv` row: the estimator's step cost and its ratios to backprop's."""
    learners = {
        "estimator": Learner.create(task, make_estimator(spec), seed, task.lr, ctx.device),
        "backprop": Learner.create(task, make_estimator("backprop"), seed, task.lr, ctx.device),
    }
    noise = {k: torch.Generator(device=ctx.device).manual_seed(seed + 1) for k in learners}
    stream = {k: _stream(task, ctx, seed) for k in learners}

    def step(kind: str) -> None:
        learners[kind].step(next(stream[kind]), noise[kind])

    for _ in range(learners["estimator"].estimator.prime_steps()):
        step("estimator")
    flops = {k: _flops_per_step(lambda k=k: step(k)) for k in learners}
    _until(WARMUP, 1, lambda _: [step(kind) for kind in learners])
    seconds: dict[str, list[float]] = {k: [] for k in learners}

    def pair(i: int) -> None:
        for kind in ("estimator", "backprop") if i % 2 == 0 else ("backprop", "estimator"):
            seconds[kind].append(timed(lambda kind=kind: step(kind), ctx.device))

    _until(REPEATS, MIN_REPEATS, pair)
    memory = {k: peak_bytes(lambda k=k: step(k), ctx.device) for k in learners}
    median = {k: statistics.median(v) for k, v in seconds.items()}
    est = learners["estimator"].estimator
    return [{
        "task": task.name, "estimator": est.name, "params": est.params_str,
        "device": str(ctx.device),
        "flops": int(flops["estimator"]), "flop_ratio": flops["estimator"] / flops["backprop"],
        "step_seconds": median["estimator"], "time_ratio": median["estimator"] / median["backprop"],
        "peak_bytes": memory["estimator"], "memory_ratio": memory["estimator"] / memory["backprop"],
    }]  # fmt: skip
