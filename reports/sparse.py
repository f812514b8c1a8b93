"""Figure: time to target and epochs to target against the keep fraction (the sparse-VJP
trade-off), for every estimator trained at two or more values of its `keep` parameter.

A smaller keep fraction makes each step cheaper but noisier, so more steps may be needed: the
figure shows both sides, one row per task. Epochs = steps to target x batch size / training-set
size; where the manifest does not record the training-set size (`n_train`) the figure shows
training examples to target (steps x batch size) instead and says so.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from reports.load import Results
from reports.reach import runs_to_target
from reports.section import Section, skip
from reports.style import (
    BACKPROP,
    PALETTE,
    Style,
    figure_legend,
    fmt,
    log_if_wide,
    new_figure,
    save,
)
from reports.sweeps import along_param

TITLE = "Figure: time and epochs to target vs keep fraction"
QUESTION = (
    "Does keeping a smaller fraction of the backward pass save time to the target accuracy, "
    "once the extra steps it needs are paid for?"
)
SOURCE = (
    "train.csv with the target from manifest.json, runs whose params contain `keep=` at two or "
    "more values for the same task, estimator and other parameters; points: median over seeds "
    "(drawn when finite, i.e. when at least half the seeds reached the target; an × on the top "
    "edge marks a keep fraction whose median is ∞), bars: min-max over the seeds that reached "
    "it; dashed line: backprop's median on the same task."
)


def _unit(res: Results, task: str) -> tuple[float, str, str]:
    """Factor from steps to the second panel's unit, the unit's name and how it is computed."""
    batch = res.task_info(task, "batch_size")
    n_train = res.task_info(task, "n_train")
    if batch is None:
        return 1.0, "steps", "steps"
    if n_train:
        return batch / n_train, "epochs", "steps × batch size / n_train"
    return float(batch), "training examples", "steps × batch size"


def _median(values: pd.Series) -> float:
    return statistics.median(values.tolist()) if len(values) else math.nan


def _panel(ax: Axes, groups: list, bp: pd.DataFrame, column: str, scale: float) -> None:
    """One measure (seconds or steps x scale) against keep, a line per group, backprop dashed."""
    drawn = []
    for colour, ((est, rest), g) in zip(PALETTE * len(groups), groups, strict=False):
        pts, never = [], []
        for keep, k in g.groupby("keep"):
            hits = k[column][np.isfinite(k[column])] * scale
            med = _median(k[column]) * scale
            if math.isfinite(med):
                pts.append((keep, med, med - hits.min(), hits.max() - med))
            else:
                never.append(keep)
        name = f"{est} ({rest})" if rest != "-" else est
        if pts:
            x, y, lo, hi = (np.array(v) for v in zip(*pts, strict=True))
            ax.errorbar(x, y, yerr=(lo, hi), color=colour, marker="o", ms=4, capsize=2,
                        label=name)  # fmt: skip
            drawn += [*(y - lo), *(y + hi)]
        if never:
            ax.plot(never, np.ones(len(never)), "x", color=colour, ms=8, clip_on=False,
                    transform=ax.get_xaxis_transform(),
                    label=f"{name}: median not reached")  # fmt: skip
    bp_med = _median(bp[column]) * scale
    if math.isfinite(bp_med):
        ax.axhline(bp_med, color="black", ls="--", lw=1, label=f"{BACKPROP} (median)")
        drawn.append(bp_med)
    if drawn:
        log_if_wide(ax, drawn, ratio=10)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no setting reached the target\nin the median over seeds",
                transform=ax.transAxes, ha="center", va="center", color="grey")  # fmt: skip
    ax.grid(alpha=0.3)


def _text(k: pd.DataFrame, factor: float, unit: str) -> str:
    seconds, step = _median(k["seconds"]), _median(k["step"]) * factor
    seeds = f"{int(np.isfinite(k['seconds']).sum())}/{len(k)} seeds"
    if not math.isfinite(seconds):
        return f"not reached in the median ({seeds})"
    return f"{fmt(seconds)} s, {fmt(step)} {unit} ({seeds})"


def build(res: Results, style: Style, out: Path) -> list[Section]:
    runs = runs_to_target(res)
    sweep = along_param(runs, "keep") if len(runs) else runs
    if sweep.empty:
        return [skip(TITLE, QUESTION, SOURCE,
                     "no estimator was trained at two or more values of `keep` on one task "
                     "(e.g. `--estimators sparse-vjp:keep=0.1 sparse-vjp:keep=0.5`)")]  # fmt: skip
    tasks = list(dict.fromkeys(sweep["task"]))
    fig, axes = new_figure(2 * len(tasks), width=5.0, cols=2)
    findings, units = [], set()
    for i, task in enumerate(tasks):
        factor, unit, how = _unit(res, task)
        units.add(unit)
        groups = list(sweep[sweep["task"] == task].groupby(["estimator", "rest"], sort=False))
        bp = runs[(runs["task"] == task) & (runs["estimator"] == BACKPROP)]
        for ax, column, scale, ylabel in (
            (axes[2 * i], "seconds", 1.0, "time to target (s)"),
            (axes[2 * i + 1], "step", factor, f"{unit} to target\n({how})"),
        ):
            _panel(ax, groups, bp, column, scale)
            ax.set(title=task, xlabel="keep fraction (parameter `keep`)", ylabel=ylabel)
        for (est, rest), g in groups:
            parts = [f"keep={fmt(keep)}: {_text(k, factor, unit)}" for keep, k in g.groupby("keep")]
            name = f"{est} ({rest})" if rest != "-" else est
            reference = f"; backprop: {_text(bp, factor, unit)}" if len(bp) else ""
            findings.append(
                f"On {task}, {name} to the target, median over seeds: {'; '.join(parts)}"
                f"{reference}."
            )
    assumption = (
        " The manifest records no training-set size (`n_train`), so the second column shows "
        "training examples (steps × batch size), not epochs."
        if "training examples" in units
        else ""
    )
    figure_legend(fig, axes, cols=2)
    files = save(fig, out, "target-vs-keep")
    return [Section(TITLE, QUESTION, SOURCE + assumption, files, findings)]
