"""Cells: independent units of a sweep, and the executor that runs them.

A cell is one task x estimator (with parameters) x seed x measurement: `train` (to target at a
given rate), `tune` (one rate of the tuning grid, on the tuning seed), `quality`, `cost` or
`scaling` (a cost cell on one size of a model family; `axis` names the size option), or `study`
(a study of `measurements.studies`, its spec in `estimator`, task "-"; its tables are written
whole, untagged, as `python -m runners.study` writes them).
Running it returns the rows it adds to each results file, each row tagged with the cell's key.
The executor only maps cells to outcomes, so another one (a cluster queue, say) can replace
`LocalExecutor` without touching the measurements.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import astuple, dataclass, replace
from typing import Any, Protocol

from estimators import make_estimator
from measurements.context import Context
from measurements.cost import CALLS, measure_cost
from measurements.quality import WORK_BATCHES, measure_quality
from measurements.scaling import measure_scaling
from measurements.studies import get_study
from measurements.study import study_name
from measurements.train import Run, train
from tasks import get_task

MEASUREMENTS = ("train", "quality", "cost", "scaling")  # what --measure may name
TUNE_SEED = 1000  # the tuning seed, kept apart from the evaluation seeds 0..S-1


@dataclass(frozen=True)
class Cell:
    """One unit of work."""

    task: str
    estimator: str  # estimator spec, e.g. "backprop" or "fg-wperp:k=10"
    seed: int
    measure: str  # train | tune | quality | cost | scaling | study
    lr: float | None = None  # train/tune: the rate (None: the task's default)
    axis: str | None = None  # scaling: the model option that is the size axis
    draws: int | None = None  # quality: the draws per checkpoint (None: the sweep's)

    @property
    def key(self) -> str:
        if self.measure == "study":
            return f"study/{self.estimator}"
        tail = f"lr={self.lr:g}" if self.measure == "tune" else f"seed={self.seed}"
        if self.measure in ("cost", "scaling"):
            tail = "step"
        return f"{self.measure}/{self.task}/{self.estimator}/{tail}"

    def units(self, ctx: Context) -> int:
        """Rough work in estimator calls, for the progress bar's estimate of the time left."""
        if self.measure in ("train", "tune"):
            return ctx.budget(get_task(self.task)).steps
        if self.measure == "quality":
            return 3 * ((self.draws or ctx.draws) * 2 + WORK_BATCHES)
        return CALLS  # cost, scaling, study


@dataclass(frozen=True)
class Outcome:
    """A finished cell: rows per results file, or the error that stopped it."""

    rows: dict[str, list[dict[str, Any]]]
    seconds: float
    error: str | None = None
    runner: str = "local"  # where it ran: local (alone), pool:N (shared with N-1), slurm:JOB

    @property
    def status(self) -> str:
        return "failed" if self.error else "done"


def run_cell(cell: Cell, ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """Measure one cell; returns the rows it adds, by results file, tagged with the cell key."""
    if cell.measure == "study":
        name, options = study_name(cell.estimator)
        study = get_study(name)
        found = study.measure(study.configure(options), ctx.device)
        return {file: found.get(file, []) for file in study.files}
    task = get_task(cell.task)
    if cell.measure in ("train", "tune"):
        lr = task.lr if cell.lr is None else cell.lr
        est = make_estimator(cell.estimator)
        run = Run(task, est, cell.seed, lr, ctx.device, *astuple(ctx.budget(task)))
        result = train(run, ctx.data(task), ctx.on_step)
        if cell.measure == "tune":
            rows = {"tuning.csv": result.rows}
        else:
            rows = {"train.csv": result.rows, "diagnostics.csv": result.diagnostics}
    elif cell.measure == "quality":
        own = ctx if cell.draws is None else replace(ctx, draws=cell.draws)
        rows = {"quality.csv": measure_quality(task, cell.estimator, cell.seed, own)}
    elif cell.measure == "cost":
        rows = {"cost.csv": measure_cost(task, cell.estimator, ctx)}
    elif cell.measure == "scaling" and cell.axis:
        rows = {"scaling.csv": measure_scaling(cell.task, cell.axis, cell.estimator, ctx)}
    else:
        raise ValueError(f"unknown measurement {cell.measure!r}; valid: {', '.join(MEASUREMENTS)}")
    return {file: [{**row, "cell": cell.key} for row in r] for file, r in rows.items()}


class Executor(Protocol):
    """Runs cells and yields each with its outcome, in any order."""

    def map(
        self, cells: Iterable[Cell], ctx: Context, on_start: Callable[[Cell], None]
    ) -> Iterator[tuple[Cell, Outcome]]: ...


class LocalExecutor:
    """Runs cells one after another in this process; a cell that raises is recorded as failed."""

    def map(
        self, cells: Iterable[Cell], ctx: Context, on_start: Callable[[Cell], None]
    ) -> Iterator[tuple[Cell, Outcome]]:
        for cell in cells:
            on_start(cell)
            start = time.perf_counter()
            try:
                rows = run_cell(cell, ctx)
            except Exception as exc:  # a failed cell is a result, the sweep goes on
                error = "".join(traceback.format_exception_only(exc)).strip()
                yield cell, Outcome({}, time.perf_counter() - start, error)
            else:
                yield cell, Outcome(rows, time.perf_counter() - start)
