"""Cells: independent units of a sweep, and the executor that runs them.

A cell is one task x estimator (with parameters) x seed x measurement. Running it returns the
rows it adds to each results file. The executor only maps cells to outcomes, so another one
(a cluster queue, say) can replace `LocalExecutor` without touching the measurements.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from estimators import make_estimator
from runners.train import Run, train
from tasks import get_task
from tasks.data import DataSource, Splits

MEASUREMENTS = ("train",)


@dataclass(frozen=True)
class Cell:
    """One unit of work."""

    task: str
    estimator: str  # estimator spec, e.g. "backprop" or "fg-wperp:k=10"
    seed: int
    measure: str

    @property
    def key(self) -> str:
        return f"{self.measure}/{self.task}/{self.estimator}/seed={self.seed}"


@dataclass
class Context:
    """What every cell of a sweep shares: the device, the data and the step override."""

    device: torch.device
    source: DataSource
    steps: int | None = None
    on_step: Callable[[int], None] | None = None
    _data: dict[str, Splits] = field(default_factory=dict)

    def data(self, dataset: str, loader: Callable[[], Splits]) -> Splits:
        """The data set on the sweep's device, loaded once per sweep."""
        if dataset not in self._data:
            self._data[dataset] = loader().to(self.device)
        return self._data[dataset]


@dataclass(frozen=True)
class Outcome:
    """A finished cell: rows per results file, or the error that stopped it."""

    rows: dict[str, list[dict[str, Any]]]
    seconds: float
    error: str | None = None

    @property
    def status(self) -> str:
        return "failed" if self.error else "done"


def run_cell(cell: Cell, ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """Measure one cell; returns the rows it adds, by results file."""
    task = get_task(cell.task)
    data = ctx.data(task.dataset, lambda: task.load(ctx.source))
    if cell.measure == "train":
        run = Run(task, make_estimator(cell.estimator), cell.seed, task.lr, ctx.device, ctx.steps)
        return {"train.csv": train(run, data, ctx.on_step)}
    raise ValueError(f"unknown measurement {cell.measure!r}; valid: {', '.join(MEASUREMENTS)}")


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
