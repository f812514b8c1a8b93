"""The cv-predicted and cv-vit-digits studies at their smoke settings, and their report sections.

Both studies are run once (one intra-op thread: the checks are on the rows, not on speed) into
one results folder; the checks are relations the rows must satisfy whatever the timings were.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from measurements.schema import STUDY_COLUMNS, to_target
from measurements.studies import cv_predicted, cv_vit_digits
from reports import build_reports
from reports.cv_predicted import COST_TITLE, VAR_TITLE
from reports.cv_vit_digits import FIG_TITLE, TAB_TITLE
from runners import study
from tasks import get_task
from tests.threads import one_thread

FILES = (*cv_predicted.STUDY.files, *cv_vit_digits.STUDY.files)
TITLES = (COST_TITLE, VAR_TITLE, FIG_TITLE, TAB_TITLE)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("cv") / "results"
    with one_thread():
        for name in ("cv-predicted", "cv-vit-digits"):
            study.run(name, out, torch.device("cpu"), smoke=True)
    yield out


def _read(folder: Path, file: str) -> pd.DataFrame:
    return pd.read_csv(folder / file, keep_default_na=False, na_values=["nan"])


def test_files_have_the_schema_columns_and_rows(folder: Path) -> None:
    for file in FILES:
        frame = _read(folder, file)
        assert tuple(frame.columns) == STUDY_COLUMNS[file], file
        assert len(frame), file


def test_cost_ratios_are_positive_and_add_up(folder: Path) -> None:
    cost = _read(folder, cv_predicted.COST)
    names = [get_task(t.replace(";", ",")).name for t in cv_predicted.SMOKE.tasks]
    assert list(cost["task"]) == names
    ratios = ["warmup_flop_ratio", "predict_flop_ratio", "predictor_flop_ratio",
              "refit_flop_ratio", "flop_ratio", "time_ratio", "time_per_flop_ratio"]  # fmt: skip
    values = cost[ratios].to_numpy(float)
    assert (values > 0).all() and pd.notna(values).all() and (values < math.inf).all()
    total = cost["predict_flop_ratio"] + cost["refit_flop_ratio"]
    assert cost["flop_ratio"].to_numpy() == pytest.approx(total.to_numpy())
    per_flop = cost["time_ratio"] / cost["flop_ratio"]
    assert cost["time_per_flop_ratio"].to_numpy() == pytest.approx(per_flop.to_numpy())
    # at fraction 0.75 a predict step does about half of backprop's matmul work, the predictor
    # a small part of it
    assert (cost["predict_flop_ratio"] < 0.75).all()
    assert (cost["predictor_flop_ratio"] < cost["predict_flop_ratio"]).all()
    assert (cost["repeats"] == cv_predicted.SMOKE.repeats).all()


def test_variance_columns_agree(folder: Path) -> None:
    var = _read(folder, cv_predicted.VARIANCE)
    cost = _read(folder, cv_predicted.COST).set_index("task")
    assert (var["rel_var_measured"] > 0).all() and (var["rel_var_closed"] > 0).all()
    ratio = var["rel_var_measured"] / var["rel_var_closed"]
    assert var["measured_over_closed"].to_numpy() == pytest.approx(ratio.to_numpy())
    eff = (1 - var["residual_ratio"]).clip(lower=0) ** 0.5
    assert var["eff_alignment"].to_numpy() == pytest.approx(eff.to_numpy())
    assert var["flop_ratio"].to_numpy() == pytest.approx(cost.loc[var["task"], "flop_ratio"])
    assert var["control"].to_numpy() == pytest.approx(var["batch"] * 0.25)
    for _, rows in var.groupby("task"):
        assert rows["break_even_flops"].nunique() == 1  # one cost ratio and fraction per task
        beta0 = rows[rows["beta"] == 0].iloc[0]  # no control variate: the residual is t itself
        assert beta0["residual_ratio"] == pytest.approx(1.0)
        assert beta0["eff_alignment"] == 0
        oracle = rows[rows["predictor"].str.startswith("oracle")].iloc[0]
        assert oracle["buffer"] == oracle["batch"] and oracle["residual_ratio"] < 1


def test_vit_runs_share_backprops_time_and_to_target(folder: Path) -> None:
    evals = _read(folder, cv_vit_digits.EVALS)
    runs = _read(folder, cv_vit_digits.RUNS).set_index(["learner", "seed"])
    reach = _read(folder, cv_vit_digits.REACH)
    budget = _read(folder, cv_vit_digits.BUDGET)
    smoke = cv_vit_digits.SMOKE
    assert set(runs.index) == {(lr, s) for lr in cv_vit_digits.learners(smoke)
                               for s in range(smoke.seeds)}  # fmt: skip
    for (learner, seed), rows in evals.groupby(["learner", "seed"]):
        run = runs.loc[(learner, seed)]
        assert rows["seconds"].is_monotonic_increasing
        assert rows["seconds"].iloc[-1] == pytest.approx(run["seconds"])
        # every run gets backprop's training time: it stops at the first step past it
        assert (rows["seconds"].iloc[:-1] < run["budget_s"]).all()
        hits = reach[(reach["learner"] == learner) & (reach["seed"] == seed)]
        for hit in hits.to_dict("records"):
            want = to_target(rows.to_dict("records"), hit["target"])
            assert hit["seconds"] == want["seconds"] and hit["step"] == want["step"]
            assert hit["reached"] == math.isfinite(want["seconds"])
    bp = runs.xs("backprop", level="learner")
    assert (bp["time_ratio"] == 1).all() and (bp["steps"] == smoke.steps).all()
    full = budget[(budget["learner"] == "backprop") & (budget["budget_fraction"] == 1)]
    assert full.set_index("seed")["val_acc"].to_dict() == bp["final_acc"].to_dict()


def test_report_sections_render(folder: Path, tmp_path: Path) -> None:
    index = build_reports(folder, tmp_path / "report").read_text()
    for title in TITLES:
        section = index.split(f"### {title}")[1].split("\n### ")[0]
        assert "**Skipped:**" not in section
        assert "| " in section or title == FIG_TITLE  # the tables are inline
    assert (tmp_path / "report" / "figures" / "cv-vit-digits.png").exists()
    for name in ("cv-predicted-cost", "cv-predicted-variance", "cv-vit-digits"):
        assert (tmp_path / "report" / "tables" / f"{name}.md").exists()
    assert "sooner than backprop in" in index


def test_report_sections_skip_without_rows(tmp_path: Path) -> None:
    """A sweep's report has no cv study sections; the sections themselves skip without rows."""
    from reports import cv_predicted, cv_vit_digits
    from reports.load import load_results
    from reports.style import Style

    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"tasks": []}, "cells": {}}))
    index = build_reports(tmp_path, tmp_path / "report").read_text()
    assert not any(f"### {title}" in index for title in TITLES)
    res = load_results(tmp_path)
    for build in (cv_predicted.build, cv_vit_digits.build):
        sections = build(res, Style.of([]), tmp_path / "report")
        assert sections and all(s.skipped for s in sections)
