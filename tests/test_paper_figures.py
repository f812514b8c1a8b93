"""The papers' own figures (`reports.paper_figures`): Ciosek et al.'s accuracy against
wall-clock (GPR 3/4 against backprop on a ViT) and Wang et al.'s accuracy against width per
guess, drawn from small hand-made train tables with the papers' axes, and their sentences.

Seed s adds 0.01 * s to every accuracy, so over 3 seeds a mean has sd 0.01 and 95% t-interval
half-width t(0.975, 2) x 0.01 / sqrt(3) = 0.0248.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from measurements.schema import COLUMNS
from reports import build_reports
from reports.load import load_results
from reports.paper_figures import cv_panel, held_at, width_panel
from reports.style import Style, new_figure
from reports.sweeps import along_option
from reports.widths import finals

BP = ("backprop", "-")
CV = ("cv-predicted", "fraction=0.75,refit_every=10")
CV_HALF = ("cv-predicted", "fraction=0.5,refit_every=10")  # not the paper's 3/4: left out
# Per setting: seconds per step, accuracy at each eval (one eval per step).
CURVES = {
    BP: (1.0, [0.1, 0.3, 0.5, 0.6, 0.7]),
    CV: (0.5, [0.1, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9]),
    CV_HALF: (0.5, [0.1, 0.2, 0.2, 0.2]),
}
WT, WPERP, ISO = ("fg-wt", "-"), ("fg-wperp", "k=10"), ("fg-activity", "-")
# Per setting and width: the final accuracy of seed 0.
FINAL = {WT: {32: 0.5, 128: 0.5}, WPERP: {32: 0.52, 128: 0.8}, ISO: {32: 0.4, 128: 0.3},
         BP: {32: 0.9, 128: 0.95}}  # fmt: skip


def _row(task: str, key: tuple[str, str], seed: int, step: int, seconds: float, acc: float) -> dict:
    return {"task": task, "estimator": key[0], "params": key[1], "seed": seed, "lr": 0.1,
            "step": step, "seconds": seconds, "flops": step, "train_loss": 1.0,
            "val_acc": acc, "status": "ok", "cell": "c"}  # fmt: skip


def _train(seeds: int = 3) -> pd.DataFrame:
    rows = []
    for task in ("vit-digits", "mlp-digits"):  # the MLP is not a ViT: not drawn
        for key, (dt, accs) in CURVES.items():
            for seed in range(seeds):
                rows += [_row(task, key, seed, i, i * dt, a + 0.01 * seed)
                         for i, a in enumerate(accs)]  # fmt: skip
    for key, by_width in FINAL.items():
        for width, acc in by_width.items():
            for seed in range(seeds):
                task = f"mlp-x:width={width}"
                rows += [_row(task, key, seed, 0, 0.0, 0.1),
                         _row(task, key, seed, 10, 1.0, acc + 0.01 * seed)]  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS["train.csv"]))


def _folder(root: Path, train: pd.DataFrame, budgets: dict[str, dict] | None = None) -> Path:
    """A results folder of `train`; `budgets`: task -> its manifest steps and seconds."""
    folder = root / "results"
    folder.mkdir()
    tasks = list(dict.fromkeys(train["task"]))
    manifest = {"config": {"tasks": tasks, "seeds": 3}, "environment": {}, "cells": {},
                "tasks": {t: {"target_acc": 0.99, **(budgets or {}).get(t, {})}
                          for t in tasks}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    train.to_csv(folder / "train.csv", index=False)
    return folder


def _style(train: pd.DataFrame) -> Style:
    return Style.of(zip(train["estimator"], train["params"], strict=True))


def test_held_at_is_the_last_eval_at_or_before_the_time() -> None:
    run = _train()
    run = run[(run["task"] == "vit-digits") & (run["estimator"] == "backprop") & (run["seed"] == 0)]
    assert held_at(run, 2.5) == 0.5 and held_at(run, 3.0) == 0.6


def test_ciosek_figure_has_the_papers_axes_and_compares_at_the_shorter_end() -> None:
    train = _train()
    rows = train[(train["task"] == "vit-digits") & (train["params"] != CV_HALF[1])]
    _fig, (ax,) = new_figure(1)
    findings = cv_panel(ax, "vit-digits", rows, _style(train))
    assert ax.get_xlabel() == "wall-clock training time (s)"
    assert ax.get_ylabel() == "validation accuracy"
    assert ax.get_xlim() == (0.0, 4.0)  # backprop's 5 evals at 1 s; cv-predicted ends at 3 s
    lo, hi = ax.get_ylim()
    assert 0.0 <= lo < 0.1 and 0.9 < hi <= 1.0
    assert len(ax.collections) == 2  # one standard-error band per curve
    # At 3 s: cv-predicted's 7th eval (0.9 + 0.01 s), backprop's 4th (0.6 + 0.01 s).
    assert findings == [
        "On vit-digits at 3 s (the shorter curve's end; 3 seeds), cv-predicted:fraction=0.75 "
        "0.91 [0.885, 0.935] against backprop 0.61 [0.585, 0.635]: higher, the 95% intervals "
        "apart."
    ]


def test_one_seed_draws_no_band_width_and_states_no_difference() -> None:
    train = _train(seeds=1)
    rows = train[(train["task"] == "vit-digits") & (train["params"] != CV_HALF[1])]
    _fig, (ax,) = new_figure(1)
    (finding,) = cv_panel(ax, "vit-digits", rows, _style(train))
    assert "not distinguishable" in finding and "[-, -]" in finding and "; 1 seed)" in finding


def test_wang_figure_has_one_line_per_guess_against_width(tmp_path: Path) -> None:
    train = _train()
    guesses = train[train["estimator"].isin(["fg-wt", "fg-wperp", "fg-activity"])]
    sweep = along_option(finals(guesses), "width")
    _fig, (ax,) = new_figure(1)
    res = load_results(_folder(tmp_path, train, {"mlp-x:width=32": {"steps": 10}}))
    findings = width_panel(ax, "mlp-x", sweep, res, _style(train))
    assert len(findings) == 2  # every run made its 10-step budget: none cut short
    assert ax.get_xlabel() == "hidden width (units per layer)"
    assert ax.get_ylabel() == "final validation accuracy"
    assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [32, 128]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == [
        "W^T guess (fg-wt)",
        "W-perp guess (fg-wperp)",
        "isotropic guess (fg-activity)",
    ]
    # Width 32: W-perp 0.53 vs W^T 0.51, intervals (half-width 0.0248) overlap; width 128 apart.
    assert findings[0].startswith("On mlp-x at width 32: W-perp guess (fg-wperp) 0.53 [0.505, ")
    assert "against W^T guess (fg-wt) 0.51 [0.485, 0.535]: not distinguishable" in findings[0]
    assert "isotropic guess (fg-activity) 0.41 [0.385, 0.435]: higher" in findings[0]
    assert "width 128: W-perp guess (fg-wperp) 0.81 [0.785, 0.835] against W^T guess (fg-wt) " \
        "0.51 [0.485, 0.535]: higher, the 95% intervals apart" in findings[1]  # fmt: skip


def test_wang_figure_marks_and_names_the_runs_a_cap_cut_short(tmp_path: Path) -> None:
    """At width 128 the runs end at step 10 of a 40-step budget (a 4 s cap): each guess gets an
    x there, the legend says what x means, and one finding names them with the median step."""
    train = _train()
    guesses = train[train["estimator"].isin(["fg-wt", "fg-wperp", "fg-activity"])]
    sweep = along_option(finals(guesses), "width")
    budgets = {"mlp-x:width=32": {"steps": 10}, "mlp-x:width=128": {"steps": 40, "seconds": 4}}
    res = load_results(_folder(tmp_path, train, budgets))
    _fig, (ax,) = new_figure(1)
    findings = width_panel(ax, "mlp-x", sweep, res, _style(train))
    marks = [line for line in ax.get_lines() if line.get_marker() == "x" and len(line.get_xdata())]
    assert sorted(float(line.get_xdata()[0]) for line in marks) == [128.0] * 3
    assert "cut short by the cap" in ax.get_legend_handles_labels()[1]
    assert findings[-1] == (
        "On mlp-x, cut short by the wall-clock cap before the step budget (median last step of "
        "those seeds; x marks the point): fg-activity at width 128 (3 of 3 seeds, step 10 of 40, "
        "4 s cap), fg-wperp at width 128 (3 of 3 seeds, step 10 of 40, 4 s cap), fg-wt at width "
        "128 (3 of 3 seeds, step 10 of 40, 4 s cap). Those points are the accuracy reached "
        "within the cap, not after the budget."
    )


def test_report_draws_both_figures_and_skips_without_the_runs(tmp_path: Path) -> None:
    train = _train()
    index = build_reports(_folder(tmp_path, train), tmp_path / "report").read_text()
    for name in ("paper-ciosek-fig1", "paper-wang-fig2"):
        for ext in ("png", "svg"):
            assert (tmp_path / "report" / "figures" / f"{name}.{ext}").stat().st_size > 1000
        assert f"(figures/{name}.png)" in index
    assert index.count("On vit-digits at 3 s") == 1  # the fraction-0.5 setting is left out
    assert "On mlp-digits at" not in index  # not a ViT
    bare = train[train["estimator"] == "backprop"]
    (tmp_path / "bare").mkdir()
    index = build_reports(_folder(tmp_path / "bare", bare), tmp_path / "bare-report").read_text()
    assert "**Skipped:** needs a ViT task with backprop and cv-predicted:fraction=0.75" in index
    assert "**Skipped:** needs two or more of fg-wt, fg-wperp, fg-activity" in index
    assert load_results(tmp_path / "bare" / "results").frame("train.csv") is not None


@pytest.mark.parametrize("width", [32, 128])
def test_finals_feed_one_point_per_seed_and_width(width: int) -> None:
    sweep = along_option(finals(_train()), "width")
    assert len(sweep[(sweep["width"] == width) & (sweep["estimator"] == "fg-wt")]) == 3
