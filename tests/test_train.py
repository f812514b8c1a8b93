"""The training loop: reproducible rows, honest FLOP counts, divergence recorded, state hooks."""

from __future__ import annotations

import math

import pytest
import torch

from estimators import Batch, Estimate, GradientEstimator, make_estimator, trainable_parameters
from measurements.flops import count_flops
from measurements.schema import COLUMNS
from measurements.train import Run, train
from tasks import get_task

TASK = get_task("mlp-diabetes")
CPU = torch.device("cpu")


class NoisyBackprop(GradientEstimator):
    """Formula: g + N(0, I) noise drawn from the step's generator (a test double)."""

    name = "test-noisy"
    unbiased = True

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self.updates = 0

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        exact = make_estimator("backprop").bind(self.model, self.loss).estimate(batch, generator)
        grads = {n: g + torch.randn(g.shape, generator=generator) for n, g in exact.grads.items()}
        return Estimate(grads=grads, loss=exact.loss, feedback=self.updates)

    def update(self, estimate: Estimate) -> None:
        assert estimate.feedback == self.updates  # estimate saw the state update left
        self.updates += 1


class PhasePerStep(NoisyBackprop):
    """Formula: as test-noisy, but a new phase every step (a FLOP probe every step)."""

    name = "test-phase-per-step"

    def phase(self) -> str:
        return f"step-{self.updates}"


class Diverging(GradientEstimator):
    """Formula: NaN loss from the third step on (a test double)."""

    name = "test-diverging"
    unbiased = False

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self.steps = 0

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        params = trainable_parameters(self.model)
        loss = torch.tensor(math.nan if self.steps >= 2 else 1.0)
        return Estimate(grads={n: torch.zeros_like(p) for n, p in params.items()}, loss=loss)

    def update(self, estimate: Estimate) -> None:
        self.steps += 1


def _run(estimator: GradientEstimator, seed: int = 0, steps: int = 30) -> list[dict]:
    return train(Run(TASK, estimator, seed, TASK.lr, CPU, steps), TASK.load()).rows


def _without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_rows_follow_the_protocol_columns_and_budget() -> None:
    rows = _run(make_estimator("backprop"), steps=60)
    assert all((*r, "cell") == COLUMNS["train.csv"] for r in rows)  # the sweep adds `cell`
    assert [r["step"] for r in rows] == [0, 25, 50, 60]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "completed"]
    assert rows[0]["flops"] == 0 and math.isnan(rows[0]["train_loss"])
    assert all(0.0 <= r["val_acc"] <= 1.0 for r in rows)
    assert rows[-1]["seconds"] > rows[1]["seconds"] > 0


def test_backprop_learns_the_task() -> None:
    rows = _run(make_estimator("backprop"), steps=TASK.steps)
    assert rows[-1]["val_acc"] >= TASK.target_acc - 0.05
    assert rows[-1]["train_loss"] < rows[1]["train_loss"]


def test_same_seed_same_run_other_seed_other_run() -> None:
    first = _without_time(_run(NoisyBackprop(), seed=3))
    assert first == _without_time(_run(NoisyBackprop(), seed=3))
    assert first != _without_time(_run(NoisyBackprop(), seed=4))


def test_flops_are_the_per_step_count_times_steps() -> None:
    rows = _run(make_estimator("backprop"), steps=30)
    data = TASK.load()
    torch.manual_seed(0)
    est = make_estimator("backprop").bind(TASK.model(), TASK.loss)
    batch = (data.x_train[: TASK.batch_size], data.y_train[: TASK.batch_size])
    per_step = count_flops(lambda: est.estimate(batch, torch.Generator()))
    assert per_step > 0
    assert [r["flops"] for r in rows] == [r["step"] * per_step for r in rows]


def test_flop_probes_do_not_change_the_run() -> None:
    """A probe every step (a new phase each time) must leave the noise stream untouched."""
    probed = _without_time(_run(PhasePerStep()))
    plain = _without_time(_run(NoisyBackprop()))
    for a, b in zip(probed, plain, strict=True):
        assert {k: v for k, v in a.items() if k != "estimator"} == {
            k: v for k, v in b.items() if k != "estimator"
        }


def test_update_hook_runs_once_per_step() -> None:
    est = NoisyBackprop()
    _run(est, steps=17)
    assert est.updates == 17


def test_divergence_is_recorded_and_stops_training() -> None:
    rows = _run(Diverging(), steps=50)
    assert rows[-1]["status"] == "diverged" and rows[-1]["step"] == 3
    assert math.isnan(rows[-1]["train_loss"])


def test_no_grad_left_on_the_model_after_training() -> None:
    est = make_estimator("backprop")
    _run(est, steps=5)
    assert all(p.grad is None for p in est.model.parameters())


@pytest.mark.parametrize("name", ["mlp-mnist1d", "bagnet-digits", "vit-digits"])
def test_embedded_tasks_train_a_few_steps(name: str) -> None:
    task = get_task(name)
    rows = train(Run(task, make_estimator("backprop"), 0, task.lr, CPU, 3), task.load()).rows
    assert rows[-1]["status"] == "completed" and rows[-1]["flops"] > 0


def test_a_wall_clock_cap_ends_the_run_early_as_completed() -> None:
    """`Run.seconds` (the sweep's `--seconds`): past the cap the run stops, evaluated."""
    run = Run(TASK, make_estimator("backprop"), 0, TASK.lr, CPU, steps=50, seconds=1e-9)
    rows = train(run, TASK.load()).rows
    assert [r["step"] for r in rows] == [0, 1] and rows[-1]["status"] == "completed"
    uncapped = train(Run(TASK, make_estimator("backprop"), 0, TASK.lr, CPU, steps=50), TASK.load())
    assert uncapped.rows[-1]["step"] == 50
