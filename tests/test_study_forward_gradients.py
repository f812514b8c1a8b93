"""The forward-gradients and quality-draws studies at their smoke sizes: what their rows must
satisfy whatever the machine's speed, and the report sections drawn from them.

Both studies run once (module fixture, one intra-op thread: tiny models gain nothing from more,
and on a shared machine extra threads mostly wait) into one results folder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from measurements.schema import STUDY_COLUMNS
from measurements.studies import get_study
from measurements.studies.forward_gradients import FIVE, JVP, REFERENCE
from measurements.studies.quality_draws import task_of
from measurements.study import StudyError
from reports.build import build_reports
from runners.study import run
from tests.threads import one_thread

CPU = torch.device("cpu")
FG, QD = get_study("forward-gradients"), get_study("quality-draws")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("fg")
    with one_thread():
        run("forward-gradients", out, CPU, smoke=True)
        run("quality-draws", out, CPU, smoke=True)
    yield out


def _rows(folder: Path, file: str) -> pd.DataFrame:
    return pd.read_csv(folder / file, keep_default_na=False, na_values=["nan"])


def test_every_file_has_rows_in_the_schema_columns(folder: Path) -> None:
    for file in (*FG.files, *QD.files):
        df = _rows(folder, file)
        assert tuple(df.columns) == STUDY_COLUMNS[file] and len(df) >= 1, file
        assert set(df.get("device", ["cpu"])) == {"cpu"}


def test_cost_ratios_and_flops(folder: Path) -> None:
    df = _rows(folder, "fg_cost.csv").set_index("estimator")
    fg = df.drop(index=["backprop", JVP])
    assert list(fg.index) == list(FG.smoke.cost_estimators)
    for column in ("pass_ratio", "estimate_ratio", "flop_ratio", "pass_less_noise_ratio"):
        assert (fg[column] > 0).all() and fg[column].map(math.isfinite).all(), column
    assert fg["noise_share"].between(0, 1).all()
    assert fg["pass_less_noise_ratio"].to_numpy() == pytest.approx(
        (fg["pass_ratio"] * (1 - fg["noise_share"])).to_numpy(), rel=1e-9
    )
    # an MLP's backprop: forward, weight gradients (one forward's FLOPs) and input gradients of
    # every layer but the first, so between 2 and 3 forwards; a forward gradient at least one
    assert 2 < df.loc["backprop", "flop_ratio"] <= 3
    assert (fg["flop_ratio"] >= 1).all() and df.loc[JVP, "flop_ratio"] >= 1
    assert math.isnan(df.loc["backprop", "pass_ratio"]) and df.loc[JVP, "pass_ratio"] > 0
    wperp = fg.index.str.startswith("fg-wperp")
    assert fg.loc[wperp, "subspace_share"].between(0, 1).all() and wperp.any()
    assert fg.loc[~wperp, "subspace_share"].isna().all()
    assert (df["forward_ms"] > 0).all() and (df["repeats"] == FG.smoke.repeats).all()


def test_memory_against_backprop(folder: Path) -> None:
    df = _rows(folder, "fg_memory.csv")
    assert (df.loc[df["estimator"] == "backprop", ["peak_ratio", "created_ratio"]] == 1).all(
        axis=None
    )
    assert (df["created_mb"] <= df["peak_mb"]).all() and (df["peak_mb"] > 0).all()
    for task, group in df.groupby("task"):  # float32 parameters and their gradients
        n_params = task_of(str(task)).n_params
        assert group["params_grads_mb"].to_numpy() == pytest.approx(2 * 4 * n_params / 1e6)
    tasks = df.loc[df["task"] == task_of(FG.smoke.memory_tasks[0]).name, "estimator"]
    assert list(tasks) == ["backprop", *FIVE]


def test_quality_and_overlaps_are_bounded(folder: Path) -> None:
    q = _rows(folder, "fg_quality.csv")
    assert set(q["estimator"]) == set(FIVE)
    assert set(q.loc[q["layer"] == "total", "estimator"]) == set(FIVE)
    assert (q["cosine_lo"] <= q["cosine"]).all() and (q["cosine"] <= q["cosine_hi"]).all()
    assert q["cosine"].between(-1, 1).all()
    assert (q[["rel_bias", "rel_variance", "rel_mse"]] >= 0).all(axis=None)
    assert (q["draws"] == FG.smoke.quality_draws).all() and (q["steps"] == 2).all()
    o = _rows(folder, "fg_overlap.csv")
    assert (o["min_overlap"] <= o["mean_overlap"] + 1e-6).all()
    assert o[["min_overlap", "mean_overlap"]].apply(lambda c: c.between(0, 1 + 1e-4)).all(axis=None)
    ns = _rows(folder, "fg_ns.csv").iloc[0]
    assert ns["sites"] == FG.smoke.ns_sites and ns["k"] == 10
    assert ns["svd_over_ns"] == pytest.approx(ns["svd_s"] / ns["ns_s"])
    assert ns["gram_over_ns"] == pytest.approx(ns["gram_s"] / ns["ns_s"])
    for column in ("ns_mean_overlap", "ns_min_overlap", "gram_min_overlap"):
        assert 0 <= ns[column] <= 1 + 1e-4


def test_draws_speedups(folder: Path) -> None:
    for file, estimators in (("fg_draws.csv", FIVE), ("quality_draws.csv", QD.smoke.estimators)):
        df = _rows(folder, file)
        assert list(df["estimator"]) == list(estimators)
        assert (df[["single_s", "batched_s", "speedup"]] > 0).all(axis=None)
        assert df["speedup"].to_numpy() == pytest.approx(df["single_s"] / df["batched_s"])
        assert (df["repeats"] == 2).all() and (df["draws"] == 2).all()


def test_report_sections_from_the_rows(folder: Path, tmp_path: Path) -> None:
    index = build_reports(folder, tmp_path / "report").read_text()
    for file in (*FG.files, *QD.files):
        assert f"Source: {file} (written by" in index
        assert not any(file in line and "Skipped" in line for line in index.splitlines())
    assert "| task " in index and "|:--" in index  # pipe tables inline
    assert "the cheapest tangent pass is fg-activity's at" in index
    assert "faster than single calls on" in index
    names = ("fg-cost", "fg-memory", "fg-quality", "fg-overlap", "fg-ns", "fg-draws",
             "quality-draws")  # fmt: skip
    assert all((tmp_path / "report" / "tables" / f"{n}.md").exists() for n in names)


def test_without_rows_the_sections_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "manifest.json").write_text('{"config": {"tasks": []}, "cells": {}}')
    index = build_reports(tmp_path / "r", tmp_path / "report").read_text()
    assert "forward-gradient estimators" not in index  # a sweep's report lists no study
    from reports import forward_gradients, quality_draws
    from reports.load import load_results
    from reports.style import Style

    res = load_results(tmp_path / "r")
    for build in (forward_gradients.build, quality_draws.build):
        sections = build(res, Style.of([]), tmp_path / "report")
        assert sections and all(s.skipped for s in sections)


def test_settings_spec_round_trips_and_bad_tables_are_refused() -> None:
    for study in (FG, QD):
        default = study.settings()
        assert study.configure(study.describe(default).partition(":")[2]) == default
    assert task_of(REFERENCE).name == "mlp-mnist1d:depth=4,width=1024"
    with pytest.raises(StudyError, match="unknown table 'costs'"):
        FG.measure(dataclasses.replace(FG.smoke, tables=("costs",)), CPU)
