"""Figure: peak memory against step time, both relative to backprop, one panel per task.

Every estimator setting of cost.csv is a point; backprop sits at (1, 1) and the memory baseline
`backprop-checkpoint` is drawn in black, so a forward-mode or zeroth-order method is worth its
noise for memory only where it lies below and left of checkpointing. A setting whose cost cell
is marked noisy is drawn hollow and left out of the findings. The findings name, per task, the
settings on the lower-left (Pareto) front: no other setting is both faster and lighter.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from reports.load import Results
from reports.section import Section, skip
from reports.style import BACKPROP, Style, figure_legend, fmt, log_if_wide, new_figure, save
from reports.tables import cost_by_setting, flag

CHECKPOINT = "backprop-checkpoint"
TITLE = "Figure: peak memory vs step time"
QUESTION = (
    "Which estimators save memory, at what cost in time, against backprop and against backprop "
    "with activation checkpointing?"
)
SOURCE = (
    "cost.csv: `memory_ratio` (peak bytes of a step over backprop's, CPU storage tracker or "
    "CUDA allocator) against `time_ratio` with its 95% interval (bars); medians over rows of a "
    "setting; hollow: cost cell marked noisy"
)


def front(points: pd.DataFrame) -> list[int]:
    """Row positions of `points` (columns time_ratio, memory_ratio) on the lower-left front:
    no other point is at most as slow and as heavy and strictly better in one of them."""
    t, m = points["time_ratio"].to_numpy(float), points["memory_ratio"].to_numpy(float)
    kept = []
    for i in range(len(points)):
        worse = (t <= t[i]) & (m <= m[i]) & ((t < t[i]) | (m < m[i]))
        if math.isfinite(t[i]) and math.isfinite(m[i]) and not worse.any():
            kept.append(i)
    return kept


def build(res: Results, style: Style, out: Path) -> list[Section]:
    cost = res.frame("cost.csv")
    if cost is None or cost.empty:
        return [skip(TITLE, QUESTION, SOURCE, "no cost.csv")]
    table = cost_by_setting(cost)
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = new_figure(len(tasks), width=4.6, cols=3)
    findings = []
    for ax, task in zip(axes, tasks, strict=True):
        t = table[table["task"] == task].reset_index(drop=True)
        for r in t.to_dict("records"):
            label = style.label(r["estimator"], r["params"])
            colour = "black" if r["estimator"] in (BACKPROP, CHECKPOINT) else style.colour(label)
            marker = "s" if r["estimator"] == CHECKPOINT else "o"
            err = np.array([[max(r["time_ratio"] - r["time_ratio_lo"], 0.0)],
                            [max(r["time_ratio_hi"] - r["time_ratio"], 0.0)]])  # fmt: skip
            ax.errorbar([r["time_ratio"]], [r["memory_ratio"]], xerr=err, color=colour,
                        marker=marker, ms=6, capsize=2, ls="none", label=label,
                        mfc="none" if flag(r["noisy"]) else colour)  # fmt: skip
        ax.axvline(1.0, color="grey", lw=0.8, ls=":")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        log_if_wide(ax, t["time_ratio"], axis="x", ratio=10)
        log_if_wide(ax, t["memory_ratio"], axis="y", ratio=10)
        ax.set(title=task, xlabel="step time / backprop's", ylabel="peak memory / backprop's")
        ax.grid(alpha=0.3)
        calm = t[~t["noisy"].map(flag)].reset_index(drop=True)
        best = calm.iloc[front(calm)] if len(calm) else calm
        if len(best):
            names = [f"{style.label(e, p)} ({fmt(tr)}× time, {fmt(mr)}× memory)"
                     for e, p, tr, mr in zip(best["estimator"], best["params"],
                                             best["time_ratio"], best["memory_ratio"],
                                             strict=True)]  # fmt: skip
            front_text = "; ".join(names)
            findings.append(f"On {task}, the lower-left front (no other setting is both faster "
                            f"and lighter; noisy timings left out): {front_text}.")  # fmt: skip
        ck = t[t["estimator"] == CHECKPOINT]
        if len(ck):
            c = ck.iloc[0]
            lighter = t[(t["memory_ratio"] < c["memory_ratio"]) & (t["estimator"] != CHECKPOINT)]
            pairs = zip(lighter["estimator"], lighter["params"], strict=True)
            names = ", ".join(style.label(e, p) for e, p in pairs)
            findings.append(
                f"On {task}, {CHECKPOINT} uses {fmt(c['memory_ratio'])}× backprop's peak memory "
                f"at {fmt(c['time_ratio'])}× its time; lighter than it: {names or 'none'}."
            )
    figure_legend(fig, axes, cols=3)
    files = save(fig, out, "memory-vs-time")
    return [Section(TITLE, QUESTION, SOURCE, files, findings)]
