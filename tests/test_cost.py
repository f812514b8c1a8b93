"""The cost cell and the timing primitive: columns, FLOPs over the timed steps, intervals that
cover, and re-measurement of a noisy cell.

Timing noise on a shared machine is never asserted on: a clean cell is made deterministic with a
fake clock that only learner steps move, and a noisy one by injecting a slow-down.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from scipy import stats

from estimators import Batch, Estimate, GradientEstimator, make_estimator
from estimators.base import PerExampleLoss
from measurements.context import Context
from measurements.cost import EXTRA_BLOCKS, measure_cost
from measurements.schema import COLUMNS
from measurements.timing import MIN_REPEATS, REPEATS, Clock, Timings, interleaved
from measurements.train import Learner
from runners.cells import Cell, run_cell
from tasks import get_task
from tasks.data import DataSource

CPU = torch.device("cpu")
TASK = "mlp-synthetic20"


class Sentinel(GradientEstimator):
    """Formula: the exact gradient. A stateful test double with two priming steps whose every
    third step (0-based steps 2, 5, 8, ...: the `sentinel` phase) computes it twice, so that step
    costs exactly twice backprop's FLOPs and every other step exactly backprop's."""

    name = "test-sentinel"
    unbiased = True

    def bind(self, model: torch.nn.Module, loss: PerExampleLoss) -> Sentinel:
        super().bind(model, loss)
        self._exact = make_estimator("backprop").bind(model, loss)
        self._step = 0
        return self

    def phase(self) -> str:
        return "sentinel" if self._step % 3 == 2 else "plain"

    def prime_steps(self) -> int:
        return 2

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        if self.phase() == "sentinel":
            self._exact.estimate(batch, generator)
        return self._exact.estimate(batch, generator)

    def update(self, estimate: Estimate) -> None:
        self._step += 1


class FakeTime:
    """Time that only moves when told (by a learner's step), and a wait for a CPU that grows by
    `queue` seconds per second of it (none: a machine to itself)."""

    def __init__(self, queue: float = 0.0) -> None:
        self.now, self.queue = 0.0, queue

    @property
    def clock(self) -> Clock:
        return Clock(now=lambda: self.now, queued=lambda: self.queue * self.now)


def _step_takes(monkeypatch: pytest.MonkeyPatch, advance: Callable[[Learner], None]) -> None:
    """Every learner step first calls `advance(learner)`, which moves a fake clock."""
    real = Learner.step

    def step(self: Learner, batch: Batch, generator: torch.Generator) -> Estimate:
        advance(self)
        return real(self, batch, generator)

    monkeypatch.setattr(Learner, "step", step)


def _ctx(tmp_path: Path) -> Context:
    return Context(CPU, DataSource(), tmp_path)


def test_a_cost_row_carries_the_schema_columns(tmp_path: Path) -> None:
    row = run_cell(Cell(TASK, "backprop", 0, "cost"), _ctx(tmp_path))["cost.csv"][0]
    assert list(row) == list(COLUMNS["cost.csv"])
    assert row["flop_ratio"] == 1.0 and row["elementwise_ratio"] == 1.0
    assert row["flops"] > 0 and row["elementwise"] > 0
    assert row["prime_flops"] == 0 and row["prime_seconds"] == 0.0
    assert row["pairs"] >= MIN_REPEATS and isinstance(row["noisy"], bool)
    assert row["time_ratio_lo"] <= row["time_ratio"] <= row["time_ratio_hi"]
    assert row["step_seconds"] > 0 and row["step_seconds_median"] > 0 and row["aa_ratio"] > 0


def test_flops_average_the_phases_in_the_proportion_they_were_timed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a fake clock (backprop steps 1 ms, the estimator's 2 ms) the cell is deterministic:
    2 priming steps (0-based steps 0, 1), 3 warm-up rounds (steps 2-4), 15 timed rounds (steps
    5-19), of which 5 are sentinels (5, 8, 11, 14, 17): FLOPs (10 x 1 + 5 x 2) / 15 = 4/3 of
    backprop's, priming 2 x backprop's. It is steady, so it is not re-measured nor marked."""
    fake = FakeTime()

    def advance(learner: Learner) -> None:
        fake.now += 1e-3 if learner.estimator.name == "backprop" else 2e-3

    _step_takes(monkeypatch, advance)
    ctx = _ctx(tmp_path)
    row = measure_cost(get_task(TASK), "test-sentinel", ctx, clock=fake.clock)[0]
    backprop = measure_cost(get_task(TASK), "backprop", ctx, clock=fake.clock)[0]
    assert row["flop_ratio"] == pytest.approx(4 / 3, rel=1e-12)
    assert row["prime_flops"] == 2 * backprop["flops"]
    assert row["prime_seconds"] == pytest.approx(2 * 2e-3)
    assert row["pairs"] == REPEATS and row["noisy"] is False
    assert row["time_ratio"] == pytest.approx(2.0) and row["aa_ratio"] == pytest.approx(1.0)
    assert row["time_ratio_hi"] - row["time_ratio_lo"] == pytest.approx(0.0, abs=1e-9)
    assert row["step_seconds"] == pytest.approx(2e-3) == row["step_seconds_median"]


def test_an_injected_slow_down_is_re_measured_then_marked_noisy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the fake clock, backprop's steps take 1 ms and the estimator's 2 ms plus, on about half
    of its calls, an extra 2-8 ms (random.Random(0)): the per-round ratios spread from 2 to 10,
    so every extra block is timed and the cell is still marked noisy. Without the slow-down the
    same cell is steady after one block (the test above)."""
    fake, rng = FakeTime(), random.Random(0)

    def slow(learner: Learner) -> None:
        fake.now += 1e-3 if learner.estimator.name == "backprop" else 2e-3
        if learner.estimator.name != "backprop" and rng.random() < 0.5:
            fake.now += rng.uniform(2e-3, 8e-3)

    _step_takes(monkeypatch, slow)
    row = measure_cost(get_task(TASK), "test-sentinel", _ctx(tmp_path), clock=fake.clock)[0]
    assert row["pairs"] == REPEATS * (1 + EXTRA_BLOCKS) and row["noisy"] is True
    assert row["aa_ratio"] == pytest.approx(1.0)
    assert row["time_ratio_hi"] > 1.1 * row["time_ratio"]


def _fake_ways(
    fake: FakeTime, seconds: dict[str, Callable[[], float]]
) -> dict[str, Callable[[], object]]:
    def way(name: str) -> Callable[[], object]:
        def call() -> None:
            fake.now += seconds[name]()

        return call

    return {name: way(name) for name in seconds}


def _steady(t: Timings) -> bool:
    return t.steady("estimator", "backprop", "control")


def test_an_aa_control_off_one_re_measures_every_block_and_is_unsteady() -> None:
    """The estimator's ratio is exact (2.0), but the control, backprop's copy, takes 1.2 ms
    against backprop's 1 ms: A/A 1.2, outside 0.9-1.1, so all extra blocks run."""
    fake = FakeTime()
    ways = _fake_ways(fake, {"estimator": lambda: 2e-3, "backprop": lambda: 1e-3,
                             "control": lambda: 1.2e-3})  # fmt: skip
    times = interleaved(ways, CPU, steady=_steady, extra=EXTRA_BLOCKS, clock=fake.clock)
    assert times.rounds == REPEATS * (1 + EXTRA_BLOCKS) and not _steady(times)
    assert times.interval("estimator", "backprop") == pytest.approx((2.0, 2.0))
    assert times.mean_ratio("control", "backprop") == pytest.approx(1.2)


def test_threads_waiting_for_a_cpu_make_an_exact_comparison_unsteady() -> None:
    """Ratio and A/A exact (2.0 and 1.0), but the process's threads queued for a CPU 0.5 s per
    second of timing (an oversubscribed machine, whose stalls fall on every step alike): all
    extra blocks run and the comparison stays unsteady. Without the wait it is steady at once."""
    for queue, rounds, steady in ((0.5, REPEATS * (1 + EXTRA_BLOCKS), False), (0.0, REPEATS, True)):
        fake = FakeTime(queue)
        ways = _fake_ways(fake, {"estimator": lambda: 2e-3, "backprop": lambda: 1e-3,
                                 "control": lambda: 1e-3})  # fmt: skip
        times = interleaved(ways, CPU, steady=_steady, extra=EXTRA_BLOCKS, clock=fake.clock)
        assert times.rounds == rounds and _steady(times) is steady
        assert times.waiting == pytest.approx(queue)


def test_re_measurement_stops_at_its_time_budget() -> None:
    """Rounds of 3.5 s (calls of 1, 1 and 1.5 s: A/A 1.5, never steady) with a 5 s budget: the
    first block stops after `MIN_REPEATS` = 3 rounds (10.5 s); a block starts only while the
    rounds took under (1 + 3) x 5 = 20 s: the second at 10.5 s, none at 21 s. 6 rounds in all."""
    fake = FakeTime()
    ways = _fake_ways(fake, {"estimator": lambda: 1.0, "backprop": lambda: 1.0,
                             "control": lambda: 1.5})  # fmt: skip
    times = interleaved(ways, CPU, steady=_steady, extra=EXTRA_BLOCKS, clock=fake.clock)
    assert times.rounds == 2 * MIN_REPEATS


def test_the_time_ratio_interval_covers_the_ratio_of_mean_times() -> None:
    """Coverage of the 95% interval over N = 400 simulated cells of 15 paired rounds (seed 0):
    backprop's call b = L B and the estimator's a = L A, with a load factor L shared by the round
    (lognormal, sigma 0.3) and own noise A, B (lognormal, sigma 0.1, medians 2 ms and 1 ms), so
    the ratio of mean times is exactly 2. Statistic: the number of intervals that contain 2; an
    exact two-sided binomial test of coverage = 0.95 must not reject at alpha = 0.01."""
    gen = torch.Generator().manual_seed(0)
    trials, level, alpha = 400, 0.95, 0.01
    covered = 0
    for _ in range(trials):
        load = 0.3 * torch.randn(REPEATS, generator=gen, dtype=torch.float64)
        own = 0.1 * torch.randn(2, REPEATS, generator=gen, dtype=torch.float64)
        a = (load + own[0]).exp() * 2e-3
        b = (load + own[1]).exp() * 1e-3
        lo, hi = Timings({"a": a.tolist(), "b": b.tolist()}).interval("a", "b", level)
        covered += lo <= 2.0 <= hi
    p = stats.binomtest(covered, trials, level).pvalue
    print(f"coverage {covered}/{trials} = {covered / trials:.3f}, binomial p = {p:.3g}")
    assert p >= alpha and not math.isnan(p)
