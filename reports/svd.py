"""Figure: the SVD subspace's projection error over training, with re-fit events marked.

Reads the `diagnostics.csv` rows of any estimator that logs names starting with
`projection_error` (svd-subspace logs `projection_error`, the gradient-norm-weighted error of
its layers, and `projection_error_max`, the worst layer's), `refit` (layers re-fitted at a
sentinel step) and `threshold` (the layers' mean re-fit threshold, calibrated on the warm-up;
older results without it fall back to a `threshold` parameter). Diagnostics are means over the
steps that logged them since the previous eval, so a re-fit is placed at the eval that closes
its window, not at its exact step.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from reports.load import KEYS, Results, number
from reports.section import Section, skip
from reports.style import LINE_STYLES, Style, fmt, half_width, new_figure, save
from tasks.spec import parse_options

TITLE = "Figure: SVD projection error over training, re-fits marked"
QUESTION = "Does the low-rank subspace keep tracking the gradient, and when is it re-fitted?"
SOURCE = (
    "diagnostics.csv, names starting with `projection_error` (||G - G P P^T|| / ||G|| of the "
    "exact gradient G, mean over the steps since the previous eval that logged it) and "
    "`refit` (▼: an eval window in which at least one layer was re-fitted); lines: mean over "
    "seeds, bands: 95% Student-t interval over seeds; dotted: the mean over layers and seeds of "
    "the re-fit threshold (diagnostic `threshold`: the warm-up's held-out projection error plus "
    "the `margin` parameter; a layer whose error exceeds its own threshold at a sentinel step is "
    "re-fitted), or the `threshold` parameter of older results."
)


def build(res: Results, style: Style, out: Path) -> list[Section]:
    diag = res.frame("diagnostics.csv")
    errors = None if diag is None else diag[diag["name"].str.startswith("projection_error")]
    if errors is None or errors.empty:
        return [skip(TITLE, QUESTION, SOURCE,
                     "no diagnostics.csv rows named `projection_error*` (svd-subspace was not "
                     "trained, or its diagnostics were not logged)")]  # fmt: skip
    refits = diag[(diag["name"] == "refit") & (diag["value"] > 0)]
    tasks = [t for t in res.tasks() if (errors["task"] == t).any()]
    names = sorted(errors["name"].unique())
    fig, axes = new_figure(len(tasks), width=5.5)
    findings, thresholds = [], set()
    for ax, task in zip(axes, tasks, strict=True):
        rows = errors[errors["task"] == task]
        settings = list(rows.groupby(KEYS[1:], sort=False))
        for i, ((est, params), g) in enumerate(settings):
            label = style.label(est, params)
            colour = style.colour(label)
            for name, n in g.groupby("name", sort=True):
                by_step = n.groupby("step")["value"]
                mean = by_step.mean()
                half = by_step.agg(lambda v: half_width(v.to_numpy(float))).fillna(0)
                line = LINE_STYLES[names.index(name) % len(LINE_STYLES)]
                ax.plot(mean.index, mean, color=colour, ls=line, marker=".")
                ax.fill_between(mean.index, mean - half, mean + half, color=colour, alpha=0.15,
                                lw=0)  # fmt: skip
            logged = diag[
                (diag["task"] == task)
                & (diag["estimator"] == est)
                & (diag["params"] == params)
                & (diag["name"] == "threshold")
            ]["value"]
            threshold = (
                float(logged.mean())
                if len(logged)
                else number(parse_options(params).get("threshold", "nan"))
            )
            if math.isfinite(threshold):
                thresholds.add(threshold)
                ax.axhline(threshold, color="grey", ls=":", lw=1)
            r = refits[(refits["task"] == task) & (refits["estimator"] == est)
                       & (refits["params"] == params)]  # fmt: skip
            if len(r):  # one row of markers per setting along the top edge
                ax.plot(r["step"], np.full(len(r), 0.98 - 0.05 * i), "v", color=colour, ms=6,
                        transform=ax.get_xaxis_transform())  # fmt: skip
            pooled = g[g["name"] == "projection_error"]["value"]
            pooled = pooled if len(pooled) else g["value"]
            windows = g[["seed", "step"]].drop_duplicates()
            findings.append(
                f"On {task}, {label}'s projection error averages {fmt(pooled.mean())} over "
                f"{len(windows)} eval windows (seeds pooled; range {fmt(pooled.min())}-"
                f"{fmt(pooled.max())}); {len(r)} of those windows contain a re-fit."
            )
        ax.set_ylim(0, max(1.15, ax.get_ylim()[1]))
        ax.set(title=task, xlabel="training step", ylabel="relative projection error (unitless)")
        ax.grid(alpha=0.3)
    keys = list(dict.fromkeys(zip(errors["estimator"], errors["params"], strict=True)))
    legend = {style.label(*k): Line2D([], [], color=style.colour(style.label(*k)), lw=6)
              for k in keys}  # fmt: skip
    legend |= {name: Line2D([], [], color="black", ls=LINE_STYLES[i % len(LINE_STYLES)])
               for i, name in enumerate(names)}  # fmt: skip
    legend |= {f"re-fit threshold {fmt(t)}": Line2D([], [], color="grey", ls=":")
               for t in sorted(thresholds)}  # fmt: skip
    if len(refits):
        legend["eval window with a re-fit"] = Line2D([], [], color="black", marker="v", ls="")
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", fontsize="small",
               ncols=min(4, len(legend)))  # fmt: skip
    note = f" Estimators: {', '.join(style.label(*k) for k in keys)}."
    return [Section(TITLE, QUESTION, SOURCE + note, save(fig, out, "svd-projection-error"),
                    findings)]  # fmt: skip
