"""The sweep's quality, cost and tuning measurements, on estimators whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from estimators import Batch, Estimate, GradientEstimator, make_estimator
from measurements.context import Context
from runners.cells import Cell, run_cell
from runners.sweep import main
from tasks.data import DataSource

CPU = torch.device("cpu")


class Half(GradientEstimator):
    """Formula: g / 2 (a test double with known bias 0.5, cosine 1 and no variance)."""

    name = "test-half"
    unbiased = False

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        exact = make_estimator("backprop").bind(self.model, self.loss).estimate(batch, generator)
        return Estimate(grads={n: g / 2 for n, g in exact.grads.items()}, loss=exact.loss)


class Twice(GradientEstimator):
    """Formula: backprop computed twice (a test double with exactly twice backprop's FLOPs)."""

    name = "test-twice"
    unbiased = True

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        exact = make_estimator("backprop").bind(self.model, self.loss)
        exact.estimate(batch, generator)
        return exact.estimate(batch, generator)


def _ctx(tmp_path: Path, draws: int = 8) -> Context:
    return Context(CPU, DataSource(), tmp_path, steps=20, draws=draws)


def test_quality_rows_for_exact_and_halved_gradients(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    exact = pd.DataFrame(
        run_cell(Cell("mlp-diabetes", "backprop", 0, "quality"), ctx)["quality.csv"]
    )
    assert set(exact["checkpoint"]) == {0, 10, 20}
    assert set(exact["layer"]) == {"hidden.0", "head", "total"}
    assert exact["cosine"].to_numpy() == pytest.approx(1.0)
    assert exact["rel_mse"].max() < 1e-20
    assert exact["work_mse"].to_numpy() == pytest.approx(1.0, abs=0.4)  # 4 batches vs exact
    assert set(exact["cell"]) == {"quality/mlp-diabetes/backprop/seed=0"}
    half = pd.DataFrame(
        run_cell(Cell("mlp-diabetes", "test-half", 0, "quality"), ctx)["quality.csv"]
    )
    assert half["rel_bias"].to_numpy() == pytest.approx(0.5)
    assert half["rel_mse"].to_numpy() == pytest.approx(0.25)
    assert half["rel_variance"].max() < 1e-20 and half["draws"].unique().tolist() == [8]
    assert (tmp_path / "checkpoints" / "mlp-diabetes-seed0.pt").exists()


def test_cost_ratios_count_the_work(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    same = run_cell(Cell("mlp-synthetic20", "backprop", 0, "cost"), ctx)["cost.csv"][0]
    assert same["flop_ratio"] == 1.0 and same["memory_ratio"] == 1.0 and same["flops"] > 0
    assert same["time_ratio"] > 0 and same["step_seconds"] > 0
    double = run_cell(Cell("mlp-synthetic20", "test-twice", 0, "cost"), ctx)["cost.csv"][0]
    assert double["flop_ratio"] == 2.0


def test_tuning_picks_a_rate_from_the_grid_and_trains_with_it(tmp_path: Path) -> None:
    out = tmp_path / "full"
    args = ["--preset", "full", "--tasks", "mlp-diabetes", "--estimators", "backprop",
            "--seeds", "2", "--steps", "40", "--measure", "train", "--out", str(out),
            "--no-reports"]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    tuning = pd.read_csv(out / "tuning.csv")
    grid = sorted(set(tuning["lr"]))
    assert len(grid) == 3 and set(tuning["seed"]) == {1000}
    chosen = manifest["chosen_lr"]["mlp-diabetes|backprop"]
    assert chosen in grid
    train = pd.read_csv(out / "train.csv")
    assert set(train["lr"]) == {chosen} and set(train["seed"]) == {0, 1}
