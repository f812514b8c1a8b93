"""The sweep's progress bar: its estimate of the time left, on a fake clock."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from measurements.context import Context
from runners.cells import Cell
from runners.progress import Progress
from tasks.data import DataSource


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _context(seconds: float | None) -> Context:
    return Context(torch.device("cpu"), DataSource(None, False), Path("unused"), 100, 8, seconds)


def _cells() -> list[Cell]:
    return [
        Cell("mlp-mnist1d", "backprop", 0, "quality"),
        Cell("mlp-mnist1d", "fg-weight", 0, "quality"),
        Cell("vit-digits", "backprop", 0, "quality"),
        Cell("mlp-mnist1d", "backprop", 0, "train"),
        Cell("mlp-mnist1d", "fg-weight", 0, "train"),
        Cell("vit-digits", "backprop", 0, "train"),
    ]


def test_time_left_sums_each_pending_cells_expected_seconds() -> None:
    """Quality cells take the median seconds per unit of finished quality cells (same task
    first, any task otherwise); training cells the cap until one on their task has finished;
    the running cell counts for what it has left; the bar ends at all cells."""
    clock, out = Clock(), io.StringIO()
    cells = _cells()
    with Progress(cells, _context(seconds=15.0), file=out, clock=clock) as progress:
        assert progress.left() is None  # no quality cell has finished: nothing to go on
        progress.start(cells[0])
        clock.now = 10.0
        progress.finish(cells[0], 10.0)
        # 2 quality cells at 10 s (same units on both tasks here) + 3 training cells at the cap
        assert progress.left() == pytest.approx(2 * 10.0 + 3 * 15.0)
        progress.start(cells[1])
        clock.now = 14.0  # 4 s into a cell expected to take 10
        assert progress.left() == pytest.approx(6.0 + 10.0 + 45.0)
        progress.finish(cells[1], 30.0)  # mlp quality: median of 10 and 30 s
        progress.start(cells[2])
        progress.finish(cells[2], 20.0)
        progress.start(cells[3])
        progress.finish(cells[3], 8.0)  # stopped early at its target: 8 s, not the cap
        assert progress.left() == pytest.approx(8.0 + 15.0)  # vit: the cap, not mlp's 8 s
        for cell in cells[4:]:
            progress.start(cell)
            progress.finish(cell, 1.0)
        assert progress.left() == 0.0
        assert progress.bar.n == progress.bar.total == len(cells)
    assert "6/6 cells" in out.getvalue() and "left" in out.getvalue()


def test_without_a_cap_training_waits_for_a_finished_run() -> None:
    """No cap and no finished training run: no estimate, said as such on the bar; then other
    tasks' training rate."""
    clock, out = Clock(), io.StringIO()
    cells = _cells()
    with Progress(cells, _context(seconds=None), file=out, clock=clock) as progress:
        for cell in cells[:3]:
            progress.start(cell)
            progress.finish(cell, 5.0)
        assert progress.left() is None
        progress.start(cells[3])
        progress.finish(cells[3], 12.0)
        assert progress.left() == pytest.approx(24.0)
    assert "estimating the time left" in out.getvalue()


def test_studies_do_not_hold_back_the_estimate_and_are_counted_after_it() -> None:
    """A study has no estimate before it runs: the time left counts the other cells and the bar
    says how many studies follow."""
    clock, out = Clock(), io.StringIO()
    cells = [
        Cell("mlp-mnist1d", "backprop", 0, "quality"),
        Cell("mlp-mnist1d", "backprop", 1, "quality"),
        Cell("-", "wperp-overlap", 0, "study"),
        Cell("-", "blog-table", 0, "study"),
    ]
    with Progress(cells, _context(seconds=None), file=out, clock=clock) as progress:
        progress.start(cells[0])
        clock.now = 10.0
        progress.finish(cells[0], 10.0)
        assert progress.left() == pytest.approx(10.0)
        assert progress.bar.postfix == "~10s left + 2 studies"
        progress.start(cells[1])
        progress.finish(cells[1], 10.0)
        progress.start(cells[2])
        progress.finish(cells[2], 60.0)
        assert progress.left() == pytest.approx(60.0)  # the finished study's rate
        assert progress.bar.postfix == "~1m 00s left"
