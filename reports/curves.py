"""Figure: validation accuracy against wall-clock training time, mean and 95% t-interval over
seeds (the control-variate paper's figure 1).

Each seed's curve holds its last eval's accuracy until the next eval; the seeds are averaged on
a common time grid up to the shortest seed's end, so every point averages all seeds. The band is
the Student-t interval of a mean over n seeds, mean ± t_{0.975, n-1} s / sqrt(n) (s the sample
standard deviation), which holds at the few seeds a sweep runs; one seed has no band.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from reports.load import KEYS, Results
from reports.section import Section, skip
from reports.style import (
    BACKPROP,
    Style,
    figure_legend,
    fmt,
    half_width,
    log_axis,
    new_figure,
    save,
    t95,
)

TITLE = "Figure: validation accuracy vs wall-clock time"
QUESTION = "Which estimator reaches a given validation accuracy soonest in wall-clock time?"
SOURCE = (
    "train.csv (every eval row; `seconds` counts training steps only), target from "
    "manifest.json; line: mean over seeds (each seed holds its last eval's accuracy until the "
    "next), band: 95% Student-t interval over seeds (mean ± t(0.975, n-1) × sd / sqrt(n)); a "
    "curve ends where its shortest seed's run ends."
)
BAND = "band: 95% t-interval over seeds"
GRID = 200


def mean_curve(runs: list[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time grid, mean accuracy and standard error (NaN for one seed) over the seeds' runs."""
    runs = [r.dropna(subset=["val_acc"]).sort_values("step") for r in runs]
    end = min(float(r["seconds"].iloc[-1]) for r in runs)
    grid = np.linspace(0.0, end, GRID)
    held = []
    for r in runs:
        t, acc = r["seconds"].to_numpy(float), r["val_acc"].to_numpy(float)
        held.append(acc[np.clip(np.searchsorted(t, grid, side="right") - 1, 0, None)])
    stack = np.stack(held)  # (seeds, GRID)
    se = stack.std(axis=0, ddof=1) / math.sqrt(len(runs)) if len(runs) > 1 else grid * math.nan
    return grid, stack.mean(axis=0), se


def _final(f: dict[str, float]) -> str:
    """ "0.71 [0.68, 0.74] (95% t-interval over 3 seeds) after a mean 12 s of training"."""
    n = f["seeds"]
    lo, hi = f["acc"] - f["half"], f["acc"] + f["half"]
    spread = f" [{fmt(lo)}, {fmt(hi)}] (95% t-interval over {n} seeds" if n > 1 else " (1 seed"
    d = f["diverged"]
    diverged = f", {d} diverged: their last finite eval counted" if d else ""
    return f"{fmt(f['acc'])}{spread}{diverged}) after a mean {fmt(f['seconds'])} s of training"


def build(res: Results, style: Style, out: Path) -> list[Section]:
    train = res.frame("train.csv")
    if train is None:
        return [skip(TITLE, QUESTION, SOURCE, "the results hold no train.csv rows")]
    train = train[train.groupby([*KEYS, "seed"])["val_acc"].transform("count") > 0]
    tasks = [t for t in res.tasks() if (train["task"] == t).any()]
    fig, axes = new_figure(len(tasks))
    findings, banded = [], False
    for ax, task in zip(axes, tasks, strict=True):
        ends = []
        finals = {}
        for (est, params), rows in train[train["task"] == task].groupby(KEYS[1:], sort=False):
            label = style.label(est, params)
            runs = [r for _, r in rows.groupby("seed")]
            grid, mean, se = mean_curve(runs)
            half = t95(len(runs)) * se
            colour = style.colour(label)
            ax.plot(grid, mean, color=colour, label=label)
            if len(runs) > 1:
                ax.fill_between(grid, mean - half, mean + half, color=colour, alpha=0.2, lw=0)
                banded = True
            ends.append(grid[-1])
            last = pd.DataFrame([r.dropna(subset=["val_acc"]).iloc[-1] for r in runs])
            finals[label] = {"acc": last["val_acc"].mean(),
                             "half": half_width(last["val_acc"].to_numpy(float)),
                             "seeds": len(last), "seconds": last["seconds"].mean(),
                             "diverged": int((rows["status"] == "diverged").sum())}  # fmt: skip
        target = res.target(task)
        if target is not None:
            ax.axhline(target, color="grey", ls="--", lw=1, label="target accuracy")
        if ends and min(ends) > 0 and max(ends) / min(ends) > 20:
            log_axis(ax, "x", "symlog", linthresh=min(ends) / 10)
        title = task if target is None else f"{task} (target {fmt(target)})"
        ax.set(title=title, xlabel="training time (s, evaluation excluded)",
               ylabel="validation accuracy")  # fmt: skip
        ax.grid(alpha=0.3)
        best = max(finals, key=lambda k: finals[k]["acc"])
        reference = BACKPROP in finals and best != BACKPROP
        findings.append(
            f"On {task}, the highest mean final validation accuracy is {best}'s: "
            f"{_final(finals[best])}"
            + (f"; backprop's is {_final(finals[BACKPROP])}." if reference else ".")
        )
    if banded:  # a legend entry that says what the bands are
        axes[0].fill_between([], [], [], color="grey", alpha=0.2, lw=0, label=BAND)
    figure_legend(fig, axes, cols=min(4, 2 * len(axes)))  # two columns fit one panel
    files = save(fig, out, "accuracy-vs-time")
    seeds = sorted(train.groupby([*KEYS])["seed"].nunique().unique())
    note = f" Seeds per curve: {seeds[0]}" + (f" to {seeds[-1]}." if len(seeds) > 1 else ".")
    note += "" if seeds[-1] > 1 else " With one seed there is no band."
    return [Section(TITLE, QUESTION, SOURCE + note, files, findings)]
