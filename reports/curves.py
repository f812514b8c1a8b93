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
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.load import KEYS, Results
from reports.section import Section, skip
from reports.style import (
    ACC_RANGE,
    BACKPROP,
    Style,
    clip,
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
AXES = (
    " The x axis ends at the longest drawn curve, or at the task's wall-clock cap when a run "
    "went past it; a curve that never rose 0.05 above its first evaluation's accuracy is not "
    "drawn but listed in the findings; an x marks the end of a run the cap cut short; bands "
    "are clipped to [0, 1]."
)
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


FLAT = 0.05  # a curve never this far above its first evaluation is summarised, not drawn


def _final(f: dict[str, float]) -> str:
    """ "0.71 [0.68, 0.74] (95% t-interval over 3 seeds) after a mean 12 s of training"; the
    interval clipped to [0, 1], an accuracy's range."""
    n = f["seeds"]
    lo, hi = clip(f["acc"] - f["half"], f["acc"] + f["half"], ACC_RANGE)
    spread = f" [{fmt(lo)}, {fmt(hi)}] (95% t-interval over {n} seeds" if n > 1 else " (1 seed"
    d = f["diverged"]
    diverged = f", {d} diverged: their last finite eval counted" if d else ""
    return f"{fmt(f['acc'])}{spread}{diverged}) after a mean {fmt(f['seconds'])} s of training"


def cut_short(rows: pd.DataFrame, steps: int | None) -> int | None:
    """The median last step of the seeds' runs in `rows` that stopped before the `steps` budget
    without diverging (a wall-clock cap stopped them), or None when none did."""
    if steps is None:
        return None
    last = rows.sort_values("step").groupby("seed").tail(1)
    short = last[(last["step"] < steps) & (last["status"] != "diverged")]
    return int(short["step"].median()) if len(short) else None


def flat(mean: np.ndarray) -> bool:
    """Whether a mean curve never rises `FLAT` above its first evaluation's accuracy."""
    return bool(np.nanmax(mean) < mean[0] + FLAT)


def panel(ax: Axes, train: pd.DataFrame, res: Results, style: Style, task: str) -> list[str]:
    """Draw one task's curves on `ax`; its findings (best final accuracy, flat curves not drawn,
    runs cut short by the cap). The x axis ends at the longest drawn curve, or at the task's
    wall-clock cap when a curve runs past it."""
    ends, finals, flats, short = [], {}, [], []
    steps, cap = res.task_info(task, "steps"), res.task_info(task, "seconds")
    for (est, params), rows in train[train["task"] == task].groupby(KEYS[1:], sort=False):
        label = style.label(str(est), str(params))
        runs = [r for _, r in rows.groupby("seed")]
        grid, mean, se = mean_curve(runs)
        last = pd.DataFrame([r.dropna(subset=["val_acc"]).iloc[-1] for r in runs])
        finals[label] = {"acc": last["val_acc"].mean(),
                         "half": half_width(last["val_acc"].to_numpy(float)),
                         "seeds": len(last), "seconds": last["seconds"].mean(),
                         "diverged": int((rows["status"] == "diverged").sum())}  # fmt: skip
        stopped = cut_short(rows, steps)
        if stopped is not None:
            short.append(f"{label} (step {stopped} of {steps})")
        if label != BACKPROP and flat(mean):
            flats.append(f"{label} ({fmt(mean[0])} to {fmt(float(mean.max()))})")
            continue
        half = t95(len(runs)) * se
        colour = style.colour(label)
        ax.plot(grid, mean, color=colour, label=label)
        if stopped is not None:  # the end of a run the cap cut short
            ax.plot(grid[-1:], mean[-1:], "x", color=colour, ms=7, mew=2)
        if len(runs) > 1:
            lo, hi = np.clip(mean - half, *ACC_RANGE), np.clip(mean + half, *ACC_RANGE)
            ax.fill_between(grid, lo, hi, color=colour, alpha=0.2, lw=0)
        ends.append(grid[-1])
    target = res.target(task)
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=1, label="target accuracy")
    right = max(ends, default=0.0)
    if cap is not None and right > cap:
        right = float(cap)
    if right > 0:
        ax.set_xlim(0, right * 1.02)
    bottom, top = ax.get_ylim()  # an accuracy axis never shows values outside [0, 1]
    ax.set_ylim(max(float(bottom), -0.01), min(float(top), 1.01))
    if ends and min(ends) > 0 and right / min(ends) > 20:
        log_axis(ax, "x", "symlog", linthresh=min(ends) / 10)
    title = task if target is None else f"{task} (target {fmt(target)})"
    title += f"\n{len(flats)} flat settings not drawn (see findings)" if flats else ""
    ax.set(title=title, xlabel="training time (s, evaluation excluded)",
           ylabel="validation accuracy")  # fmt: skip
    ax.grid(alpha=0.3)
    best = max(finals, key=lambda k: finals[k]["acc"])
    reference = BACKPROP in finals and best != BACKPROP
    out = [
        f"On {task}, the highest mean final validation accuracy is {best}'s: "
        f"{_final(finals[best])}"
        + (f"; backprop's is {_final(finals[BACKPROP])}." if reference else ".")
    ]
    if flats:
        out.append(f"On {task}, not drawn: {len(flats)} settings whose mean accuracy never rose "
                   f"{FLAT} above their first evaluation's (first to highest): "
                   f"{', '.join(flats)}.")  # fmt: skip
    if short:
        cap_text = f"the {fmt(cap)} s wall-clock cap" if cap is not None else "a cap"
        out.append(f"On {task}, cut short by {cap_text} before the {steps}-step budget (median "
                   f"last step over the seeds cut short; x marks the end): "
                   f"{', '.join(short)}.")  # fmt: skip
    return out


def figure(train: pd.DataFrame, res: Results, style: Style) -> tuple[Figure, list[str]]:
    """The figure (one panel per task with eval rows in `train`) and its findings."""
    train = train[train.groupby([*KEYS, "seed"])["val_acc"].transform("count") > 0]
    tasks = [t for t in res.tasks() if (train["task"] == t).any()]
    fig, axes = new_figure(len(tasks), height=4.4)  # room for the legend below
    findings = []
    for ax, task in zip(axes, tasks, strict=True):
        findings += panel(ax, train, res, style, task)
    if any(len(ax.collections) for ax in axes):  # a legend entry that says what the bands are
        axes[0].fill_between([], [], [], color="grey", alpha=0.2, lw=0, label=BAND)
    figure_legend(fig, axes, cols=min(4, 2 * len(axes)))  # two columns fit one panel
    return fig, findings


def build(res: Results, style: Style, out: Path) -> list[Section]:
    train = res.frame("train.csv")
    if train is None or train["val_acc"].notna().sum() == 0:
        return [skip(TITLE, QUESTION, SOURCE, "the results hold no train.csv eval rows")]
    fig, findings = figure(train, res, style)
    files = save(fig, out, "accuracy-vs-time")
    seeds = sorted(train.groupby([*KEYS])["seed"].nunique().unique())
    note = f" Seeds per curve: {seeds[0]}" + (f" to {seeds[-1]}." if len(seeds) > 1 else ".")
    note += "" if seeds[-1] > 1 else " With one seed there is no band."
    return [Section(TITLE, QUESTION, SOURCE + note + AXES, files, findings)]
