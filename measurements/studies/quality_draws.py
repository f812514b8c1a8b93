"""R draws in one vectorised call against R single estimates, per estimator and task.

    python -m runners.study quality-draws[:draws=64,repeats=3,estimators=fg-weight+sparse-vjp]
        [--device cpu|cuda|auto] [--threads N]

Both ways draw at the same frozen state on the same batch (the task's first `batch_size`
training examples, or `batch` of them), each model seeded 0: R calls of `estimate` against one
`estimate_draws(batch, R)`. The two are timed by `measurements.timing.interleaved` (one warm-up
round, then `repeats` rounds, the order rotating), and each row (`quality_draws.csv`) gives both
medians and their ratio measured in this run. The protocol asks R = 64 batched draws to be at
least 4x faster than 64 single ones for the forward-gradient and sparse-VJP estimators.

Task and estimator specs with several options separate them by `;`
(`mlp-mnist1d:width=16;depth=1`, `sparse-vjp:sketch=rank;share=false`), since `,` separates the
study's settings. The forward-gradient study's draws table
(`measurements.studies.forward_gradients`) is measured by `draws_rows` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from estimators import Batch, GradientEstimator, make_estimator
from measurements.study import Rows, Study
from measurements.timing import interleaved
from tasks import Task, get_task

FILE = "quality_draws.csv"
DEFAULT = (
    "fg-weight",
    "fg-activity",
    "fg-wt",
    "fg-wperp-ns",
    "sparse-vjp",
    "sparse-vjp:sketch=minvar;share=false",
    "sparse-vjp:sketch=rank;share=false",
    "sparse-vjp:sketch=uniform;axis=unit;share=false",
)
SMOKE_TASK = "mlp-mnist1d:width=16;depth=1"


def task_of(spec: str) -> Task:
    """The task of a spec whose model options may be separated by `;` (see the docstring)."""
    return get_task(spec.replace(";", ","))


def task_batch(task: Task, size: int, device: torch.device) -> Batch:
    """The first `size` training examples (the task's batch size when `size` is 0), copied: a
    slice would keep the whole training set's storage, which `StoragePeak` would count."""
    data = task.load()
    size = size or task.batch_size
    return data.x_train[:size].to(device).clone(), data.y_train[:size].to(device).clone()


def skipped(estimator: str, task: str, skip: tuple[str, ...]) -> bool:
    """Whether `estimator@task` is listed in `skip` (task as written in the settings)."""
    return f"{estimator}@{task}" in skip


def compare(
    est: GradientEstimator, batch: Batch, draws: int, repeats: int, device: torch.device
) -> tuple[float, float, int]:
    """Median seconds of R single estimates and of one call drawing R, and the rounds timed."""
    gen = torch.Generator(device=device).manual_seed(0)
    ways: dict[str, Callable[[], object]] = {
        "single": lambda: [est.estimate(batch, gen) for _ in range(draws)],
        "batched": lambda: est.estimate_draws(batch, draws, gen),
    }
    times = interleaved(ways, device, warmup=1, repeats=repeats, min_repeats=repeats)
    return times.median("single"), times.median("batched"), times.rounds


def draws_rows(
    tasks: tuple[str, ...],
    estimators: tuple[str, ...],
    draws: int,
    repeats: int,
    batch: int,
    device: torch.device,
    skip: tuple[str, ...] = (),
) -> list[dict[str, object]]:
    """One row per task and estimator (those in `skip` as `estimator@task` left out)."""
    rows = []
    for spec in tasks:
        task = task_of(spec)
        data = task_batch(task, batch, device)
        for written in estimators:
            if skipped(written, spec, skip):
                continue
            name = written.replace(";", ",")
            torch.manual_seed(0)
            est = make_estimator(name).bind(task.model().to(device), task.loss)
            single, batched, rounds = compare(est, data, draws, repeats, device)
            rows.append({
                "task": task.name, "estimator": written, "params": est.params_str,
                "batch": len(data[0]), "draws": draws, "device": str(device),
                "threads": torch.get_num_threads(), "single_s": single, "batched_s": batched,
                "speedup": single / batched, "repeats": rounds,
            })  # fmt: skip
    return rows


@dataclass(frozen=True)
class Settings:
    """Tasks and estimators by spec (tuples joined by `+`); batch 0: each task's own size."""

    tasks: tuple[str, ...] = ("mlp-mnist1d", "vit-digits")
    estimators: tuple[str, ...] = DEFAULT
    draws: int = 64
    repeats: int = 3
    batch: int = 0


def measure(s: Settings, device: torch.device) -> Rows:
    return {FILE: draws_rows(s.tasks, s.estimators, s.draws, s.repeats, s.batch, device)}


STUDY = Study(
    name="quality-draws",
    summary="R draws in one estimate_draws call against R single estimates, time per estimator",
    files=(FILE,),
    settings=Settings,
    smoke=Settings(tasks=(SMOKE_TASK,), draws=2, repeats=2, batch=16),
    measure=measure,
)
