"""Figure per task: cosine, relative bias and relative variance per estimator and per layer, at
each quality checkpoint.

Small multiples: a row of panels per checkpoint, a column per statistic, the layers down each
panel's y axis, so many layers make the figure taller, never wider. Points are medians over
seeds, one per layer and setting, not joined across layers (layers are categories). Cosine bars
span the envelope of the seeds' 95% draw intervals; bias and variance bars span min to max over
seeds (no bars with one seed). Bias and variance are drawn on log axes, so exact zeros
(backprop) are left out; each log axis starts at most 8 powers of ten below the largest value
of its statistic (`style.log_floor`), a value below that (float noise) drawn at the floor as a
left-pointing triangle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports.load import KEYS, Results
from reports.quality import cosine_cell, over_seeds
from reports.section import Section, skip
from reports.style import (
    BACKPROP,
    PALETTE,
    Style,
    apart,
    figure_legend,
    fmt,
    log_axis,
    log_floor,
    save,
    slug,
)

TITLE = "Figure: gradient quality per layer and checkpoint"
QUESTION = "In which layers, and at which point of training, does each estimator lose quality?"
SOURCE = (
    "quality.csv, every layer (a module's weight and bias together; `total` = the whole "
    "gradient), every checkpoint, median over seeds. Cosine bars: envelope of the seeds' 95% "
    "draw intervals; bias and variance bars: min-max over seeds (a bar reaching the bottom of "
    "the log axis: a seed at zero). Zeros (exact backprop) are not drawn on the log axes; a log "
    "axis starts at most 8 powers of ten below its statistic's largest value, a smaller value "
    "(float noise) drawn at that floor as a left-pointing triangle."
)
MARKERS = "osD^v"  # a new shape each time the palette's colours come round again
ROWS = (("cosine", "cosine with the exact gradient"), ("rel_bias", "relative bias"),
        ("rel_variance", "relative variance"))  # fmt: skip


def _bars(g: pd.DataFrame, stat: str) -> tuple[np.ndarray, np.ndarray] | None:
    lo, hi = ("cosine_lo", "cosine_hi") if stat == "cosine" else (f"{stat}_min", f"{stat}_max")
    if stat != "cosine" and (g["seeds"] < 2).all():
        return None
    return (g[stat] - g[lo]).clip(lower=0).to_numpy(), (g[hi] - g[stat]).clip(lower=0).to_numpy()


def _values(q: pd.DataFrame, stat: str) -> list[float]:
    """Every value a log panel of `stat` shows (points and bar ends)."""
    cols = [stat, f"{stat}_min", f"{stat}_max"]
    return [float(v) for c in cols if c in q for v in q[c].to_numpy(float)]


def figure(q: pd.DataFrame, style: Style, task: str) -> Figure:
    """Small multiples: a row per checkpoint, a column per statistic; in each panel the layers
    run down the y axis (so many layers make the figure taller, never wider) and each setting
    is a point per layer, not joined across layers. Log panels start at `log_floor` of the
    row's values: a value below it (float noise of an unbiased estimate) is drawn at the floor
    as a left-pointing triangle."""
    checkpoints = sorted(q["checkpoint"].unique())
    layers = [x for x in dict.fromkeys(q["layer"]) if x != "total"] + ["total"]
    keys = list(dict.fromkeys(zip(q["estimator"], q["params"], strict=True)))
    height = max(2.6, 0.17 * len(layers) + 1.2)  # inches per row
    fig = Figure(figsize=(4.6 * len(ROWS), height * len(checkpoints)), layout="constrained")
    axes = fig.subplots(len(checkpoints), len(ROWS), squeeze=False, sharey=True)
    y = np.arange(len(layers))
    offsets = np.linspace(-0.3, 0.3, len(keys)) if len(keys) > 1 else np.zeros(1)
    floors = {stat: log_floor(_values(q, stat)) for stat, _ in ROWS[1:]}
    for row, checkpoint in enumerate(checkpoints):
        at = q[q["checkpoint"] == checkpoint]
        for col, (stat, name) in enumerate(ROWS):
            ax = axes[row][col]
            floor = floors.get(stat)
            for i, (offset, (est, params)) in enumerate(zip(offsets, keys, strict=True)):
                g = at[(at["estimator"] == est) & (at["params"] == params)]
                g = g.set_index("layer").reindex(layers).dropna(subset=[stat]).reset_index()
                if stat != "cosine":
                    g = g[g[stat] > 0]
                if g.empty:
                    continue
                label = style.label(est, params)
                colour = style.colour(label)
                pos = y[[layers.index(layer) for layer in g["layer"]]] + offset
                value = g[stat].to_numpy(float)
                low = np.zeros(len(g), bool) if floor is None else value < floor
                shown = np.where(low, floor if floor is not None else 0.0, value)
                bars = _bars(g, stat)
                if bars is not None and floor is not None and stat != "cosine":
                    bars = (np.minimum(bars[0], shown - floor), bars[1])
                xerr = None if bars is None else (bars[0][~low], bars[1][~low])
                marker = MARKERS[i // len(PALETTE) % len(MARKERS)]
                ax.errorbar(shown[~low], pos[~low], xerr=xerr, fmt=marker, ms=4, elinewidth=1.2,
                            capsize=2, color=colour, label=label)  # fmt: skip
                if low.any():
                    ax.plot(shown[low], pos[low], "<", ms=5, color=colour)
            if stat == "cosine":
                ax.axvline(0, color="grey", lw=0.8)
                ax.set_xlim(min(-0.05, ax.get_xlim()[0]), 1.05)
            elif floor is not None and ax.has_data():
                log_axis(ax, "x")
                ax.set_xlim(left=floor / 1.5)
            ax.set_yticks(y, layers, fontsize="small")
            ax.set_ylim(len(layers) - 0.5, -0.5)  # first layer on top
            ax.set_xlabel(f"{name} (ratio, unitless)" if stat != "cosine" else name)
            ax.grid(alpha=0.3, axis="x")
            ax.set_title(f"{task}, step {checkpoint}", fontsize="medium")
            if col == 0:
                ax.set_ylabel("layer")
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
        files += save(figure(q, style, task), out, f"quality-layers-{slug(task)}")
        findings += _finding(q, style, task)
    return [Section(TITLE, QUESTION, SOURCE, files, findings)]
