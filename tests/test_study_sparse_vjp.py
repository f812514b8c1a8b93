"""The sparse-vjp and sparse-vjp-tradeoff studies at their smoke sizes, and their reports."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from measurements.schema import STUDY_COLUMNS
from measurements.studies import get_study
from reports import sparse_vjp_study, sparse_vjp_tradeoff
from reports.build import build_reports
from reports.load import Results
from reports.style import Style
from runners.study import run

CPU = torch.device("cpu")
COST, VARIANCE, TRADEOFF = (
    "sparse_vjp_cost.csv",
    "sparse_vjp_variance.csv",
    "sparse_vjp_tradeoff.csv",
)
RATIOS = ["bwd_time_ratio", "bwd_flop_ratio", "step_time_ratio", "step_flop_ratio",
          "time_flop_ratio", "dense_bwd_ms"]  # fmt: skip


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("svjp")
    run("sparse-vjp", folder, CPU, smoke=True)
    run("sparse-vjp-tradeoff", folder, CPU, smoke=True)
    return folder


def _read(folder: Path, file: str) -> pd.DataFrame:
    df = pd.read_csv(folder / file)
    assert tuple(df.columns) == STUDY_COLUMNS[file]
    return df


def test_cost_rows_are_finite_ratios_with_fewer_flops(results: Path) -> None:
    smoke = get_study("sparse-vjp").smoke
    cost = _read(results, COST)
    assert len(cost) == len(smoke.tasks) * len(smoke.variants)
    assert (cost[RATIOS].map(math.isfinite).all().all()) and (cost[RATIOS] > 0).all().all()
    assert (cost["keep"] == 0.25).all()
    # keep 0.25: a sketched layer's backward does about a quarter of the dense work
    assert (cost["bwd_flop_ratio"] < 0.5).all() and (cost["step_flop_ratio"] < 1).all()
    assert cost["time_flop_ratio"].to_numpy() == pytest.approx(
        (cost["step_time_ratio"] / cost["step_flop_ratio"]).to_numpy()
    )
    assert (cost["repeats"] == smoke.repeats).all() and (cost["calls"] >= 1).all()


def test_variance_rows_cover_every_layer_and_variant(results: Path) -> None:
    smoke = get_study("sparse-vjp").smoke
    var = _read(results, VARIANCE)
    variants = set(zip(var["axis"], var["sketch"], strict=True))
    assert variants == {tuple(v.split("-")) for v in smoke.variance_variants}
    per_variant = var.groupby(["axis", "sketch"])["layer"].apply(list)
    assert all(layers == per_variant.iloc[0] and "total" in layers for layers in per_variant)
    assert (var["rel_variance"] > 0).all() and var["rel_variance"].map(math.isfinite).all()
    assert (var["draws"] == smoke.draws).all()


def test_tradeoff_rows_are_one_per_run_from_to_target(results: Path) -> None:
    smoke = get_study("sparse-vjp-tradeoff").smoke
    rows = _read(results, TRADEOFF)
    assert len(rows) == len(smoke.tasks) * len(smoke.keeps) * smoke.seeds
    dense = rows[rows["keep"] == 1]
    assert (dense["estimator"] == "backprop").all()
    sparse = rows[rows["keep"] < 1]
    assert sparse["estimator"].str.startswith("sparse-vjp:").all()
    # budget: the `steps` override, doubled below keep 0.5
    assert (rows["budget_steps"] == smoke.steps * (1 + (rows["keep"] < 0.5))).all()
    # smoke target 0.05 is met at initialisation: to_target counts from step 0
    assert rows["reached"].all() and (rows["steps_to_target"] == 0).all()
    assert (rows["seconds_to_target"] == 0).all() and (rows["flops_to_target"] == 0).all()
    assert (rows["step_seconds"] > 0).all() and (rows["status"] == "completed").all()


def test_tradeoff_summary_spreads_over_reached_runs_only() -> None:
    inf = math.inf
    base = {"task": "t", "budget_steps": 10, "status": "completed", "final_acc": 0.9}
    rows = pd.DataFrame([
        {**base, "keep": 1.0, "reached": True, "steps_to_target": 4, "epochs_to_target": 1.0,
         "seconds_to_target": 2.0, "flops_to_target": 4e9, "step_seconds": 0.5},
        {**base, "keep": 0.5, "reached": True, "steps_to_target": 6, "epochs_to_target": 1.5,
         "seconds_to_target": 1.5, "flops_to_target": 3e9, "step_seconds": 0.25},
        {**base, "keep": 0.5, "reached": False, "steps_to_target": inf, "epochs_to_target": inf,
         "seconds_to_target": inf, "flops_to_target": inf, "step_seconds": 0.25},
    ])  # fmt: skip
    summ = sparse_vjp_tradeoff.summary(rows).set_index("keep")
    assert summ.loc[0.5, "reached"] == 1 and summ.loc[0.5, "runs"] == 2
    assert summ.loc[0.5, "seconds"] == "1.5 [1.5-1.5]" and summ.loc[0.5, "gflops"] == "3 [3-3]"
    assert summ.loc[0.5, "step_ratio"] == 0.5 and summ.loc[0.5, "median_seconds"] == inf


def test_report_sections_draw_the_rows(results: Path, tmp_path: Path) -> None:
    index = build_reports(results, tmp_path / "report").read_text()
    for title in (sparse_vjp_study.COST_TITLE, sparse_vjp_study.VAR_TITLE,
                  sparse_vjp_tradeoff.TITLE):  # fmt: skip
        section = index.split(f"### {title}")[1].split("\n### ")[0]
        assert "**Skipped:**" not in section and "| task" in section
    assert "Backward time is at most 0.45× dense on" in index
    assert "counted from step 0 like the sweep" in index
    for name in ("sparse-vjp-cost", "sparse-vjp-variance", "sparse-vjp-tradeoff"):
        assert (tmp_path / "report" / "tables" / f"{name}.md").exists()


def test_without_rows_the_sections_are_skipped(tmp_path: Path) -> None:
    empty = Results(tmp_path, {"config": {}}, {})
    style = Style.of([])
    sections = [*sparse_vjp_study.build(empty, style, tmp_path),
                *sparse_vjp_tradeoff.build(empty, style, tmp_path)]  # fmt: skip
    assert len(sections) == 3
    assert all(s.skipped and "python -m runners.study sparse-vjp" in s.skipped for s in sections)
