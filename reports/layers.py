"""Figure per task: cosine, relative bias and relative variance per estimator and per layer, at
each quality checkpoint.

Points are medians over seeds, joined by thin lines across layers to guide the eye. Cosine
bars span the envelope of the seeds' 95% draw intervals; bias and variance bars span min to max
over seeds (no bars with one seed). Bias and variance are drawn on log axes, so exact zeros
(backprop) are left out of those two rows. Each row shares its y axis across checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports.load import KEYS, Results
from reports.quality import cosine_cell, over_seeds
from reports.section import Section, skip
from reports.style import BACKPROP, Style, apart, figure_legend, fmt, log_axis, save, slug

TITLE = "Figure: gradient quality per layer and checkpoint"
QUESTION = "In which layers, and at which point of training, does each estimator lose quality?"
SOURCE = (
    "quality.csv, every layer (a module's weight and bias together; `total` = the whole "
    "gradient), every checkpoint, median over seeds. Cosine bars: envelope of the seeds' 95% "
    "draw intervals; bias and variance bars: min-max over seeds (a bar reaching the bottom of "
    "the log axis: a seed at zero). Zeros (exact backprop) are not drawn on the log axes."
)
ROWS = (("cosine", "cosine with the exact gradient"), ("rel_bias", "relative bias"),
        ("rel_variance", "relative variance"))  # fmt: skip


def _bars(g: pd.DataFrame, stat: str) -> tuple[np.ndarray, np.ndarray] | None:
    lo, hi = ("cosine_lo", "cosine_hi") if stat == "cosine" else (f"{stat}_min", f"{stat}_max")
    if stat != "cosine" and (g["seeds"] < 2).all():
        return None
    return (g[stat] - g[lo]).clip(lower=0).to_numpy(), (g[hi] - g[stat]).clip(lower=0).to_numpy()


def _figure(q: pd.DataFrame, style: Style, task: str) -> Figure:
    checkpoints = sorted(q["checkpoint"].unique())
    layers = [x for x in dict.fromkeys(q["layer"]) if x != "total"] + ["total"]
    keys = list(dict.fromkeys(zip(q["estimator"], q["params"], strict=True)))
    width = max(4.2, 0.3 * len(layers) + 0.1 * len(keys))  # inches per checkpoint
    fig = Figure(figsize=(width * len(checkpoints), 9.0), layout="constrained")
    axes = fig.subplots(3, len(checkpoints), squeeze=False, sharex=True, sharey="row")
    x = np.arange(len(layers))
    offsets = np.linspace(-0.3, 0.3, len(keys)) if len(keys) > 1 else np.zeros(1)
    for col, checkpoint in enumerate(checkpoints):
        at = q[q["checkpoint"] == checkpoint]
        for row, (stat, name) in enumerate(ROWS):
            ax = axes[row][col]
            for offset, (est, params) in zip(offsets, keys, strict=True):
                g = at[(at["estimator"] == est) & (at["params"] == params)]
                g = g.set_index("layer").reindex(layers).dropna(subset=[stat]).reset_index()
                if stat != "cosine":
                    g = g[g[stat] > 0]
                if g.empty:
                    continue
                label = style.label(est, params)
                pos = x[[layers.index(layer) for layer in g["layer"]]] + offset
                ax.errorbar(pos, g[stat], yerr=_bars(g, stat), fmt="o-", lw=0.6, ms=4,
                            elinewidth=1.2, capsize=2, color=style.colour(label),
                            label=label)  # fmt: skip
            if stat == "cosine":
                ax.axhline(0, color="grey", lw=0.8)
                ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
            elif any(a.has_data() for a in axes[row]):
                log_axis(ax)
            ax.set_xticks(x, layers, fontsize="small", rotation=90 if len(layers) > 4 else 0)
            if col == 0:
                ax.set_ylabel(f"{name} (ratio, unitless)" if stat != "cosine" else name)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{task}, checkpoint: step {checkpoint}")
            if row == len(ROWS) - 1:
                ax.set_xlabel("layer")
    figure_legend(fig, axes.ravel(), cols=4)
    return fig


def _finding(q: pd.DataFrame, style: Style, task: str) -> list[str]:
    end = q[q["checkpoint"] == q["checkpoint"].max()]
    out = []
    for (est, params), g in end.groupby(KEYS[1:], sort=False):
        layers = g[g["layer"] != "total"]
        if est == BACKPROP or layers.empty or layers["cosine"].isna().all():
            continue
        worst, best = layers.loc[layers["cosine"].idxmin()], layers.loc[layers["cosine"].idxmax()]
        total = g[g["layer"] == "total"]
        ends = (worst["cosine_lo"], worst["cosine_hi"], best["cosine_lo"], best["cosine_hi"])
        verdict = (
            "the two 95% intervals apart"
            if apart(*ends)
            else "not distinguishable at these draws (the two 95% intervals overlap or are absent)"
        )
        spread = (
            f"is {fmt(worst['cosine'])} in every layer"
            if fmt(worst["cosine"]) == fmt(best["cosine"])
            else f"ranges from {cosine_cell(worst)} ({worst['layer']}) to {cosine_cell(best)} "
            f"({best['layer']}), {verdict}"
        )
        out.append(
            f"On {task} at the last checkpoint (step {int(end['checkpoint'].iloc[0])}), "
            f"{style.label(est, params)}'s cosine {spread}; total "
            f"{cosine_cell(total.iloc[0]) if len(total) else '-'}."
        )
    return out


def build(res: Results, style: Style, out: Path) -> list[Section]:
    quality = res.frame("quality.csv")
    if quality is None:
        return [skip(TITLE, QUESTION, SOURCE, "the results hold no quality.csv rows")]
    files, findings = [], []
    for task in res.tasks():
        rows = quality[quality["task"] == task]
        if rows.empty:
            continue
        q = over_seeds(rows, [*KEYS, "checkpoint", "layer"])
        files += save(_figure(q, style, task), out, f"quality-layers-{slug(task)}")
        findings += _finding(q, style, task)
    return [Section(TITLE, QUESTION, SOURCE, files, findings)]
