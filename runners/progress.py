"""The sweep's progress bar: cells done of all, the cell being run, and the time left.

tqdm's own estimate divides the work left by the recent rate, which fails here: a quality draw,
a cost repeat and a training step differ in duration by orders of magnitude, and training runs
that stop at their wall-clock cap never do the steps they were counted for (the `quick` sweep
was told 34 minutes after 2 and took 9.5). So the bar counts cells, and the time left is the
sum over the cells still to run of each one's expected seconds:
- a cell like ones already finished (same measurement, train and tune alike, same task) is
  expected to take their median seconds per unit of work (`Cell.units`) times its units;
- else a training cell under a wall-clock cap is expected to take the cap (steps cost 10x more
  on one task than on another, so other tasks' rates mislead more than the cap does);
- else the median over other tasks (same measurement);
- otherwise no estimate is shown until one cell of its kind has finished;
- a study (`study` cell) has no estimate before it has run: the time left then counts the other
  cells and says how many studies follow ("~4m 10s left + 2 studies").
The running cell counts for its expected seconds less the time it has already run.

The running cell is named as the report names it (`train vit-digits sparse-vjp:keep=0.5 seed=0`,
`tasks.labels.short_labels`), and the line fits in `WIDTH` columns: the name is cut with "…"
when it would leave the bar fewer than `BAR_MIN` columns.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Iterable
from typing import IO

from tqdm import tqdm

from measurements.context import Context
from runners.cells import Cell
from tasks import get_task
from tasks.labels import short_labels
from tasks.spec import split_spec

REFRESH_S = 0.5  # redraw the time left at most this often while a cell runs
FORMAT = "{desc}|{bar}| {n_fmt}/{total_fmt} cells [{elapsed}{postfix}]"
WIDTH = 100  # the bar's line never exceeds this many columns (nor the terminal's width)
BAR_MIN = 6  # columns kept for the bar itself
ESTIMATING = "estimating the time left"
LONGEST = "~59m 59s left + 9 studies"  # the longest postfix


def _kind(cell: Cell) -> str:
    return "train" if cell.measure in ("train", "tune") else cell.measure


def describe(cell: Cell, labels: dict[tuple[str, str], str]) -> str:
    """ "train vit-digits cv-predicted seed=0": the cell with its estimator's short label
    ("study wperp-overlap": a study's spec)."""
    if cell.measure == "study":
        return f"study {cell.estimator}"
    label = labels.get(split_spec(cell.estimator), cell.estimator)
    tail = cell.key.rsplit("/", 1)[-1]
    return " ".join([cell.measure, cell.task, label] + ([tail] if tail != "step" else []))


def width() -> int:
    """The bar's width: `WIDTH`, or the terminal's when narrower."""
    return min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """A cell-counting tqdm bar whose postfix is the estimated time left (see module doc)."""

    def __init__(
        self,
        cells: Iterable[Cell],
        ctx: Context,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pending = {cell.key: cell for cell in cells}
        self.labels = short_labels(split_spec(c.estimator) for c in self.pending.values())
        self.ctx, self.clock = ctx, clock
        self.rates: dict[tuple[str, str], list[float]] = {}  # (kind, task) -> seconds per unit
        self.current: Cell | None = None
        self.started = self.drawn = 0.0
        self.bar = tqdm(total=len(self.pending), unit="cell", ncols=width(),
                        bar_format=FORMAT, file=file, mininterval=REFRESH_S)  # fmt: skip

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def start(self, cell: Cell) -> None:
        """`cell` begins now."""
        self.current, self.started = cell, self.clock()
        self.bar.set_description_str(self._fit(describe(cell, self.labels)), refresh=False)
        self._show()

    def step(self, _: int = 0) -> None:
        """A training step of the running cell ended (redraws the time left now and then)."""
        if self.clock() - self.drawn >= REFRESH_S:
            self._show()

    def finish(self, cell: Cell, seconds: float) -> None:
        """`cell` ended after `seconds` (done or failed)."""
        units = max(cell.units(self.ctx), 1)
        self.rates.setdefault((_kind(cell), cell.task), []).append(seconds / units)
        self.pending.pop(cell.key, None)
        self.current = None
        self.bar.update(1)
        self._show()

    def expected(self, cell: Cell) -> float | None:
        """Seconds `cell` is expected to take, or None when nothing yet says."""
        kind, units = _kind(cell), max(cell.units(self.ctx), 1)
        same = self.rates.get((kind, cell.task))
        if same:
            return statistics.median(same) * units
        if kind == "train":
            cap = self.ctx.budget(get_task(cell.task)).seconds
            if cap is not None:
                return cap
        other = [r for (k, _), rs in self.rates.items() if k == kind for r in rs]
        return statistics.median(other) * units if other else None

    def left(self) -> float | None:
        """Seconds until every pending cell but the studies with no estimate has run, or None
        when some other cell has no estimate."""
        total = 0.0
        for key, cell in self.pending.items():
            seconds = self.expected(cell)
            if seconds is None and cell.measure == "study":
                continue
            if seconds is None:
                return None
            running = self.current is not None and key == self.current.key
            total += max(seconds - (self.clock() - self.started), 0.0) if running else seconds
        return total

    def _fit(self, text: str) -> str:
        """`text` cut (with "…") so that the line keeps `BAR_MIN` columns for the bar at the
        longest postfix, the full count and ten hours elapsed."""
        rest = tqdm.format_meter(self.bar.total, self.bar.total, 36000.0, prefix="",
                                 bar_format=FORMAT.replace("{bar}", ""),
                                 postfix=LONGEST)  # fmt: skip
        room = max(self.bar.ncols - BAR_MIN - len(rest), 12)
        return text if len(text) <= room else text[: room - 1] + "…"

    def _show(self) -> None:
        self.drawn = self.clock()
        seconds = self.left()
        text = ESTIMATING if seconds is None else f"~{_clock(seconds)} left"
        studies = sum(c.measure == "study" and self.expected(c) is None
                      for c in self.pending.values())  # fmt: skip
        if seconds is not None and studies:
            text += f" + {studies} stud{'y' if studies == 1 else 'ies'}"
        self.bar.set_postfix_str(text)
