"""Cost of one training step of an estimator against backprop, on the same model and batches.

Both learners start from the same seeded initialisation and see the same batches; a stateful
estimator is first primed (`prime_steps()` steps) so its steady-state step is measured.
- FLOPs: `FlopCounterMode` over `FLOP_STEPS` steps, divided by their number (phases and refits
  that happen within them are averaged in).
- Time: `measurements.timing.interleaved` over the two learners' steps (warm-up, then pairs in
  alternating order, the median of each; CUDA events on a GPU).
- Slow steps (a per-example SVD on a CPU can take seconds): the FLOP loop and the timing loops
  stop once they have spent `BUDGET_S` seconds (after at least one FLOP step, one warm-up round
  and `MIN_REPEATS` timed pairs), so that one cost cell stays within about a minute.
- Peak memory: `measurements.memory.peak_bytes` of one step beyond what existed before it.
A step is estimate + optimizer step + estimator update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch

from estimators import Batch, make_estimator
from measurements.context import Context
from measurements.flops import count_flops
from measurements.memory import peak_bytes
from measurements.timing import BUDGET_S, bounded, interleaved
from measurements.train import Learner, batches
from tasks import Task

FLOP_STEPS = 10


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
        count = bounded(FLOP_STEPS, 1, lambda _: step(), BUDGET_S)

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
    steps = {k: partial(step, k) for k in learners}
    flops = {k: _flops_per_step(steps[k]) for k in learners}
    times = interleaved(steps, ctx.device)
    memory = {k: peak_bytes(steps[k], ctx.device) for k in learners}
    median = {k: times.median(k) for k in learners}
    est = learners["estimator"].estimator
    return [{
        "task": task.name, "estimator": est.name, "params": est.params_str,
        "device": str(ctx.device),
        "flops": int(flops["estimator"]), "flop_ratio": flops["estimator"] / flops["backprop"],
        "step_seconds": median["estimator"], "time_ratio": median["estimator"] / median["backprop"],
        "peak_bytes": memory["estimator"], "memory_ratio": memory["estimator"] / memory["backprop"],
    }]  # fmt: skip
