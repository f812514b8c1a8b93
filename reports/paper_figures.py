"""Figures: two of the source papers' figures, redrawn from the sweep's train.csv with the
papers' axes.

- Ciosek, Felicioni and Elenter Litwin (2511.05187), figure 1: validation accuracy against
  wall-clock training time on a ViT, mean over seeds with standard-error bands, backprop against
  predicted gradients for 3/4 of each batch (`cv-predicted:fraction=0.75`, their "GPR 3/4").
- Wang, Markou and Campbell, figure 2: accuracy against MLP width, one line per guess of dL/ds
  (W^T: `fg-wt`, W-perp: `fg-wperp`, isotropic: `fg-activity`), mean over seeds with
  standard-error bars. The sweep records validation, not training, accuracy: the y axis is the
  final validation accuracy.

Sentences compare at 95% Student-t intervals over seeds (`reports.style.half_width`) and call
one line above another only when the two intervals are apart.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from reports.curves import mean_curve
from reports.load import KEYS, Results
from reports.section import Section, skip
from reports.style import (
    BACKPROP,
    Style,
    apart,
    figure_legend,
    fmt,
    half_width,
    interval,
    log_axis,
    new_figure,
    save,
)
from reports.sweeps import along_option
from reports.widths import (
    finals,
    legend_short,
    mark_short,
    short_of_budget,
    short_sentence,
)
from tasks.spec import NONE, parse_options

PREDICTED = "cv-predicted"
FRACTION = 0.75  # the paper's GPR 3/4: predicted share of each batch
CV_TITLE = "Figure: Ciosek et al. Fig. 1, validation accuracy vs wall-clock, GPR 3/4 vs backprop"
CV_QUESTION = (
    "With 3/4 of each batch's gradient predicted, does a ViT reach a higher validation accuracy "
    "than backprop in the same wall-clock time?"
)
CV_SOURCE = (
    f"train.csv, ViT tasks (`vit` in the name) holding backprop and {PREDICTED} at fraction "
    f"{FRACTION}; line: mean over seeds of each seed's last eval's accuracy, band: ± one standard "
    "error over seeds (as in the paper); compared at the shorter curve's end with 95% Student-t "
    "intervals over seeds."
)
GUESSES = {"fg-wt": "W^T guess", "fg-wperp": "W-perp guess", "fg-activity": "isotropic guess"}
WIDTH_TITLE = "Figure: Wang et al. Fig. 2, accuracy vs width per guess"
WIDTH_QUESTION = (
    "Does the W-perp guess of dL/ds train better than the W^T and isotropic guesses, and more "
    "so as the MLP widens?"
)
WIDTH_SOURCE = (
    "train.csv, the last eval of each run (diverged runs left out), tasks named with `width=` at "
    f"two or more widths, estimators {', '.join(f'{e} ({n})' for e, n in GUESSES.items())}; "
    "points: mean over seeds, bars: ± one standard error, x: a seed's run cut short by the "
    "wall-clock cap (the paper compares at equal steps); the sweep records validation accuracy, "
    "not the paper's training accuracy. Compared with 95% Student-t intervals over seeds."
)


def _fraction(params: str) -> float:
    options = parse_options(params) if params != NONE else {}
    try:
        return float(options.get("fraction", math.nan))
    except ValueError:
        return math.nan


def held_at(run: pd.DataFrame, seconds: float) -> float:
    """The accuracy of a run's last eval at or before `seconds` (its curve held between evals)."""
    run = run.dropna(subset=["val_acc"]).sort_values("step")
    before = run[run["seconds"] <= seconds]
    return float(before["val_acc"].iloc[-1]) if len(before) else math.nan


def _stat(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% t-interval over seeds (NaN ends for one seed), clipped to [0, 1]."""
    a = np.array(values, float)
    mean, half = float(a.mean()), half_width(a)
    return mean, max(mean - half, 0.0), min(mean + half, 1.0)


def _compare(name: str, mine: tuple[float, float, float], other: str,
             theirs: tuple[float, float, float]) -> str:  # fmt: skip
    if apart(mine[1], mine[2], theirs[1], theirs[2]):
        word = "higher" if mine[0] > theirs[0] else "lower"
        verdict = f"{word}, the 95% intervals apart"
    else:
        verdict = "not distinguishable (the 95% intervals overlap or are absent)"
    return f"{name} {interval(*mine)} against {other} {interval(*theirs)}: {verdict}"


def cv_panel(ax: Axes, task: str, rows: pd.DataFrame, style: Style) -> list[str]:
    """Draw one task's curves (backprop first); sentences comparing each predicted setting with
    backprop at the shorter curve's end."""
    runs: dict[str, list[pd.DataFrame]] = {}
    for (est, params), g in rows.groupby(KEYS[1:], sort=False):
        runs[style.label(str(est), str(params))] = [r for _, r in g.groupby("seed")]
    ends, lows, highs = [], [], []
    for label, seeds in runs.items():
        grid, mean, se = mean_curve(seeds)
        band = np.nan_to_num(se)
        colour = style.colour(label)
        ax.plot(grid, mean, color=colour, label=label)
        ax.fill_between(grid, mean - band, mean + band, color=colour, alpha=0.2, lw=0)
        ends.append(float(grid[-1]))
        lows.append(float((mean - band).min()))
        highs.append(float((mean + band).max()))
    ax.set(
        title=task,
        xlabel="wall-clock training time (s)",
        ylabel="validation accuracy",
        xlim=(0, max(ends)),
        ylim=(max(min(lows) - 0.02, 0), min(max(highs) + 0.02, 1)),
    )
    ax.grid(alpha=0.3)
    end = min(ends)
    stats = {k: _stat([held_at(r, end) for r in v]) for k, v in runs.items()}
    bp, *predicted = runs
    n = min(len(v) for v in runs.values())
    counted = f"{n} seeds" if n > 1 else "1 seed"
    return [f"On {task} at {fmt(end)} s (the shorter curve's end; {counted}), "
            f"{_compare(cv, stats[cv], bp, stats[bp])}." for cv in predicted]  # fmt: skip


def cv_figure(res: Results, style: Style, out: Path) -> Section:
    """Ciosek et al.'s figure 1, or a skip naming what to run."""
    train = res.frame("train.csv")
    need = (
        f"needs a ViT task with backprop and {PREDICTED}:fraction={FRACTION} in train.csv "
        "(`python -m runners.sweep --preset claims`, or `--preset paper-cv --data-root DIR`)"
    )
    if train is None:
        return skip(CV_TITLE, CV_QUESTION, CV_SOURCE, need)
    train = train[train["val_acc"].notna()]
    mine = (train["estimator"] == BACKPROP) | (
        (train["estimator"] == PREDICTED)
        & (train["params"].map(_fraction).sub(FRACTION).abs() < 1e-9)
    )
    rows = train[mine & train["task"].str.contains("vit")]
    tasks = [t for t in res.tasks() if rows[rows["task"] == t]["estimator"].nunique() == 2]
    if not tasks:
        return skip(CV_TITLE, CV_QUESTION, CV_SOURCE, need)
    fig, axes = new_figure(len(tasks), width=5.0, height=3.6)
    findings: list[str] = []
    for ax, task in zip(axes, tasks, strict=True):
        one = rows[rows["task"] == task]
        one = one.sort_values("estimator", key=lambda s: s != BACKPROP, kind="stable")
        findings += cv_panel(ax, task, one, style)
    if rows.groupby(KEYS)["seed"].nunique().max() > 1:  # a legend entry for the bands
        axes[0].fill_between([], [], [], color="grey", alpha=0.2, lw=0, label="± 1 standard error")
    figure_legend(fig, axes)
    return Section(CV_TITLE, CV_QUESTION, CV_SOURCE, save(fig, out, "paper-ciosek-fig1"), findings)


def width_panel(ax: Axes, base: str, rows: pd.DataFrame, res: Results, style: Style) -> list[str]:
    """Draw one base task's guesses against width (`rows`: final evals with a `width`
    column), an x where a cap cut runs short; sentences comparing W-perp with each other guess
    at the smallest and largest width, and naming the runs cut short."""
    findings: list[str] = []
    short = short_of_budget(rows, res)
    widths = sorted(rows["width"].unique())
    at: dict[str, dict[float, tuple[float, float, float]]] = {}
    order = list(GUESSES)  # the paper's legend order
    groups = sorted(rows.groupby(KEYS[1:], sort=False), key=lambda kg: order.index(str(kg[0][0])))
    for (est, params), g in groups:
        label = f"{GUESSES[str(est)]} ({style.label(str(est), str(params))})"
        means = g.groupby("width")["val_acc"].agg(["mean", "sem"]).reset_index()
        ax.errorbar(
            means["width"],
            means["mean"],
            yerr=means["sem"].fillna(0),
            marker="o",
            ms=4,
            capsize=2,
            label=label,
            color=style.colour(style.label(str(est), str(params))),
        )
        mark_short(ax, g, short, "val_acc", style.colour(style.label(str(est), str(params))))
        acc = g.groupby("width")["val_acc"].agg(list)
        at[label] = {float(w): _stat(v) for w, v in zip(acc.index, acc, strict=True)}
    log_axis(ax, "x", base=2)
    ax.set_xticks(widths, [fmt(w) for w in widths])
    ax.set(title=base, xlabel="hidden width (units per layer)",
           ylabel="final validation accuracy")  # fmt: skip
    ax.grid(alpha=0.3)
    wperp = [label for label in at if label.startswith(GUESSES["fg-wperp"])]
    for w in (widths[0], widths[-1]):
        for mine in wperp:
            others = [o for o in at if o not in wperp and w in at[o]]
            if w in at[mine] and others:
                parts = [_compare(mine, at[mine][w], o, at[o][w]) for o in others]
                findings.append(f"On {base} at width {fmt(w)}: {'; '.join(parts)}.")
    legend_short(ax, short)
    cut = short_sentence(base, rows, short, res, style)
    return findings + ([cut] if cut is not None else [])


def width_figure(res: Results, style: Style, out: Path) -> Section:
    """Wang et al.'s figure 2, or a skip naming what to run."""
    train = res.frame("train.csv")
    need = (
        "needs two or more of " + ", ".join(GUESSES) + " trained on one MLP task at two or "
        "more widths (`python -m runners.sweep --preset claims` or `--preset paper-wperp`)"
    )
    if train is None:
        return skip(WIDTH_TITLE, WIDTH_QUESTION, WIDTH_SOURCE, need)
    sweep = along_option(finals(train[train["estimator"].isin(GUESSES)]), "width")
    bases = [b for b in dict.fromkeys(sweep["base"])
             if sweep[sweep["base"] == b]["estimator"].nunique() >= 2]  # fmt: skip
    if not bases:
        return skip(WIDTH_TITLE, WIDTH_QUESTION, WIDTH_SOURCE, need)
    fig, axes = new_figure(len(bases), width=5.0, height=3.6)
    findings: list[str] = []
    for ax, base in zip(axes, bases, strict=True):
        findings += width_panel(ax, base, sweep[sweep["base"] == base], res, style)
    figure_legend(fig, axes, cols=2)
    files = save(fig, out, "paper-wang-fig2")
    return Section(WIDTH_TITLE, WIDTH_QUESTION, WIDTH_SOURCE, files, findings)


def build(res: Results, style: Style, out: Path) -> list[Section]:
    return [cv_figure(res, style, out), width_figure(res, style, out)]
