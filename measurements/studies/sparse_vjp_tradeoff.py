"""sparse-vjp: more epochs for cheaper epochs? Time-, FLOPs- and epochs-to-target vs keep.

    python -m runners.study sparse-vjp-tradeoff[:tasks=mlp-mnist1d+vit-digits,keeps=1+0.5+0.25+0.1,
        seeds=3,sketch=uniform,axis=row] --out DIR [--threads N]

Each run is the real training loop (`measurements.train.train`) at the task's default rate and
batch size. keep 1 is plain backprop (a diagonal sketch that keeps everything is the exact
gradient, and backprop is its fastest form). Budgets: the task's own step budget
(`measurements.budget.budget`; `steps` overrides it) for keep >= 0.5 and twice that below 0.5,
so that slower-converging low keeps get a chance. Runs are interleaved (for each seed, every
keep in turn) so that machine load drifts hit all keeps alike.

One row per run (`sparse_vjp_tradeoff.csv`): whether it reached the task's target validation
accuracy (`target` overrides it), and the step, epochs, training seconds (evaluation excluded)
and FLOPs (`FlopCounterMode`, per step) to the first evaluation at or above target
(`measurements.schema.to_target`: counted from step 0, like the sweep; inf when never reached),
its seconds per step over the whole run, final validation accuracy and status. The report gives
per task and keep the runs that reached the target (reached/total), then over those runs the
median [min-max] steps, epochs, seconds and FLOPs to target, the median seconds per step
relative to keep 1, and the median final validation accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from estimators import make_estimator
from measurements.budget import budget
from measurements.schema import to_target
from measurements.studies.sparse_vjp import DENSE, sparse_spec, where
from measurements.study import Rows, Study
from measurements.train import Run, train
from tasks import Task, get_task
from tasks.data import Splits

FILE = "sparse_vjp_tradeoff.csv"


@dataclass(frozen=True)
class Settings:
    """`steps` 0: each task's budget; `target` 0: each task's target accuracy."""

    tasks: tuple[str, ...] = ("mlp-mnist1d", "vit-digits")
    keeps: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1)
    seeds: int = 3
    sketch: str = "uniform"
    axis: str = "row"
    steps: int = 0
    target: float = 0.0


def steps_for(task: Task, keep: float, steps: int) -> int:
    """Training steps: the budget rule's (`steps` 0: the task's own), doubled for keep < 0.5."""
    return budget(task, steps or None).steps * (2 if keep < 0.5 else 1)


def run_row(
    task: Task, data: Splits, keep: float, seed: int, s: Settings, device: torch.device
) -> dict[str, Any]:
    """One training run, summarised: when it first reached the target, and its pace."""
    spec = DENSE if keep == 1 else sparse_spec(keep, s.axis, s.sketch)
    steps = steps_for(task, keep, s.steps)
    rows = train(Run(task, make_estimator(spec), seed, task.lr, device, steps), data).rows
    target = s.target or task.target_acc
    hit = to_target(rows, target)
    last = rows[-1]
    n = len(data.x_train)
    return {
        "task": task.name, "keep": keep, "estimator": spec, "sketch": s.sketch, "axis": s.axis,
        "seed": seed, "lr": task.lr, "batch": min(task.batch_size, n), "budget_steps": steps,
        "target": target, "reached": math.isfinite(hit["seconds"]),
        "steps_to_target": hit["step"], "epochs_to_target": hit["step"] * task.batch_size / n,
        "seconds_to_target": hit["seconds"], "flops_to_target": hit["flops"],
        "step_seconds": last["seconds"] / last["step"], "final_acc": last["val_acc"],
        "status": last["status"], **where(device),
    }  # fmt: skip


def measure(s: Settings, device: torch.device) -> Rows:
    rows = []
    for name in s.tasks:
        task = get_task(name)
        data = task.load().to(device)
        rows += [run_row(task, data, keep, seed, s, device)
                 for seed in range(s.seeds) for keep in s.keeps]  # fmt: skip
    return {FILE: rows}


STUDY = Study(
    name="sparse-vjp-tradeoff",
    summary="sparse-vjp training runs: steps, epochs, seconds and FLOPs to target vs keep",
    files=(FILE,),
    settings=Settings,
    smoke=Settings(
        tasks=("mlp-mnist1d:width=16",), keeps=(1.0, 0.25), seeds=1, steps=2, target=0.05
    ),
    measure=measure,
)
