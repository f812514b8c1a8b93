"""Figure: end-of-training accuracy and loss against MLP width (the W-perp paper's figure 2),
when the results hold one task at two or more widths (`mlp-mnist1d:width=512`).

The sweep records validation accuracy and the mean training loss per eval window, not training
accuracy, so the figure shows the final validation accuracy and the final training loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reports.load import KEYS, Results
from reports.section import Section, skip
from reports.style import Style, figure_legend, fmt, half_width, log_axis, new_figure, save
from reports.sweeps import along_option

TITLE = "Figure: final accuracy and training loss vs MLP width"
QUESTION = "Does widening the network help or hurt each estimator?"
SOURCE = (
    "train.csv, the last eval of each run (diverged runs left out), tasks named with "
    "`width=` at two or more widths; points: mean over seeds, bars: 95% Student-t interval over "
    "seeds. Training accuracy is not recorded by the sweep: validation accuracy and the mean "
    "training loss of the last eval window are shown instead."
)


def finals(train: pd.DataFrame) -> pd.DataFrame:
    """The last eval row of every run that did not diverge."""
    last = train.sort_values("step").groupby([*KEYS, "seed"], sort=False).tail(1)
    return last[last["status"] != "diverged"]


def _mean_half(values: pd.Series) -> tuple[float, float]:
    """Mean and 95% t-interval half-width over seeds (NaN for one seed)."""
    return float(values.mean()), half_width(values.to_numpy(float))


def build(res: Results, style: Style, out: Path) -> list[Section]:
    train = res.frame("train.csv")
    if train is None:
        return [skip(TITLE, QUESTION, SOURCE, "the results hold no train.csv rows")]
    sweep = along_option(finals(train), "width")
    if sweep.empty:
        return [skip(TITLE, QUESTION, SOURCE,
                     "no task was run at two or more widths "
                     "(e.g. `--tasks mlp-mnist1d:width=64 mlp-mnist1d:width=512`)")]  # fmt: skip
    bases = list(dict.fromkeys(sweep["base"]))
    fig, axes = new_figure(2 * len(bases), cols=2)
    findings = []
    for i, base in enumerate(bases):
        acc_ax, loss_ax = axes[2 * i], axes[2 * i + 1]
        rows = sweep[sweep["base"] == base]
        for (est, params), label in style.labels.items():
            g = rows[(rows["estimator"] == est) & (rows["params"] == params)]
            if g.empty:
                continue
            points = []
            for width, w in g.groupby("width"):
                points.append((width, *_mean_half(w["val_acc"]), *_mean_half(w["train_loss"])))
            x, acc, acc_half, loss, loss_half = (np.array(v) for v in zip(*points, strict=True))
            kw = {"color": style.colour(label), "marker": "o", "ms": 4, "capsize": 2}
            acc_ax.errorbar(x, acc, yerr=np.nan_to_num(acc_half), label=label, **kw)
            loss_ax.errorbar(x, loss, yerr=np.nan_to_num(loss_half), label=label, **kw)
            findings.append(
                f"On {base}, {label}'s final validation accuracy goes from {fmt(acc[0])} at width "
                f"{fmt(x[0])} to {fmt(acc[-1])} at width {fmt(x[-1])}; its final training loss "
                f"from {fmt(loss[0])} to {fmt(loss[-1])}."
            )
        target = res.target(rows["task"].iloc[0])
        if target is not None:
            acc_ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {fmt(target)}")
        for ax, what in ((acc_ax, "final validation accuracy"),
                         (loss_ax, "final training loss")):  # fmt: skip
            log_axis(ax, "x", base=2)
            ax.set(title=base, xlabel="hidden width (units per layer)", ylabel=what)
            ax.grid(alpha=0.3)
    figure_legend(fig, axes)
    return [Section(TITLE, QUESTION, SOURCE, save(fig, out, "accuracy-vs-width"), findings)]
