"""Figure: agreement with the true gradient against the subspace rank k (the W-perp paper's
figure 1), for every estimator run at two or more values of its `k` parameter.

The results hold no subspace overlap as such; what is drawn is quality.csv's cosine between the
estimator's draws and the exact mini-batch gradient. For an estimator that returns the
orthogonal projection Pg of the gradient onto a rank-k subspace this cosine equals the overlap
||Pg|| / ||g||; for a randomised estimator (a forward gradient in a k-dimensional subspace) it
is the mean cosine of single draws, which is lower than the overlap of its subspace.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.load import KEYS, Results
from reports.quality import cosine_cell, over_seeds
from reports.section import Section, skip
from reports.style import (
    LINE_STYLES,
    PALETTE,
    Style,
    apart,
    fmt,
    log_axis,
    new_figure,
    save,
)
from reports.sweeps import along_param

TITLE = "Figure: cosine with the true gradient vs subspace rank k"
QUESTION = "How much of the true gradient does a rank-k estimator capture as k grows?"
SOURCE = (
    'quality.csv, `layer == "total"`, rows whose params contain `k=` with at least two values '
    "of k for the same task, estimator and other parameters; median over seeds, bars: envelope "
    "of the seeds' 95% draw intervals. Plotted: the mean cosine between draws and the exact "
    "mini-batch gradient; it equals the overlap ||Pg||/||g|| with the rank-k subspace only for "
    "an estimator that returns the projection Pg, and is lower for a randomised one."
)


def _change(end: pd.DataFrame) -> str:
    """ "goes from 0.6 [0.5, 0.7] at k=1 to 0.9 [0.8, 1] at k=4, ...": a rise or fall stated
    only when the two 95% intervals are apart."""
    first, last = end.iloc[0], end.iloc[-1]
    ends = (first["cosine_lo"], first["cosine_hi"], last["cosine_lo"], last["cosine_hi"])
    verdict = (
        ("higher" if last["cosine"] > first["cosine"] else "lower")
        + f" at k={fmt(last['k'])}, the two 95% intervals apart"
        if apart(*ends)
        else "not distinguishable at these draws (the two 95% intervals overlap or are absent)"
    )
    every = ", ".join(f"k={fmt(r['k'])}: {cosine_cell(r)}" for _, r in end.iterrows())
    return (f"goes from {cosine_cell(first)} at k={fmt(first['k'])} to {cosine_cell(last)} at "
            f"k={fmt(last['k'])}: {verdict} ({every})")  # fmt: skip


def build(res: Results, style: Style, out: Path) -> list[Section]:
    quality = res.frame("quality.csv")
    if quality is None:
        return [skip(TITLE, QUESTION, SOURCE, "the results hold no quality.csv rows")]
    total = quality[quality["layer"] == "total"]
    sweep = along_param(over_seeds(total, [*KEYS, "checkpoint"]), "k")
    if sweep.empty:
        return [skip(TITLE, QUESTION, SOURCE,
                     "no estimator was run at two or more values of `k` on one task "
                     "(e.g. `--estimators svd-subspace:k=1 svd-subspace:k=4`)")]  # fmt: skip
    tasks = [t for t in res.tasks() if (sweep["task"] == t).any()]
    fig, axes = new_figure(len(tasks))
    findings = []
    for ax, task in zip(axes, tasks, strict=True):
        rows = sweep[sweep["task"] == task]
        checkpoints = sorted(rows["checkpoint"].unique())
        groups = list(rows.groupby(["estimator", "rest"], sort=False))
        for colour, ((est, rest), g) in zip(PALETTE * len(groups), groups, strict=False):
            name = est if rows[rows["estimator"] == est]["rest"].nunique() == 1 else f"{est}:{rest}"
            for line, checkpoint in zip(LINE_STYLES * len(checkpoints), checkpoints, strict=False):
                c = g[g["checkpoint"] == checkpoint].sort_values("k")
                yerr = ((c["cosine"] - c["cosine_lo"]).clip(lower=0),
                        (c["cosine_hi"] - c["cosine"]).clip(lower=0))  # fmt: skip
                ax.errorbar(c["k"], c["cosine"], yerr=yerr, color=colour, ls=line, marker="o",
                            ms=4, capsize=2, label=f"{name}, step {checkpoint}")  # fmt: skip
            end = g[g["checkpoint"] == checkpoints[-1]].sort_values("k")
            findings.append(f"On {task} at the last checkpoint (step {checkpoints[-1]}), "
                            f"{name}'s cosine {_change(end)}.")  # fmt: skip
        if rows["k"].max() / rows["k"].min() > 8:
            log_axis(ax, "x", base=2)
        ax.set_xticks(sorted(rows["k"].unique()), [fmt(k) for k in sorted(rows["k"].unique())])
        ax.set(title=task, xlabel="subspace rank k (parameter `k`)",
               ylabel="cosine with the exact gradient")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return [Section(TITLE, QUESTION, SOURCE, save(fig, out, "cosine-vs-k"), findings)]
