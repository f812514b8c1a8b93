"""Figure: end-of-training accuracy and loss against MLP width (the W-perp paper's figure 2),
when the results hold one task at two or more widths (`mlp-mnist1d:width=512`).

The sweep records validation accuracy and the mean training loss per eval window, not training
accuracy, so the figure shows the final validation accuracy and the final training loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from reports.load import KEYS, Results
from reports.section import Section, skip
from reports.style import Style, figure_legend, fmt, half_width, log_axis, new_figure, save
from reports.sweeps import along_option

TITLE = "Figure: final accuracy and training loss vs MLP width"
QUESTION = "Does widening the network help or hurt each estimator?"
SOURCE = (
    "train.csv, the last eval of each run (diverged runs left out), tasks named with "
    "`width=` at two or more widths; points: mean over seeds, bars: 95% Student-t interval over "
    "seeds; x: a seed's run cut short by the wall-clock cap. Training accuracy is not recorded "
    "by the sweep: validation accuracy and the mean training loss of the last eval window are "
    "shown instead."
)


def finals(train: pd.DataFrame) -> pd.DataFrame:
    """The last eval row of every run that did not diverge."""
    last = train.sort_values("step").groupby([*KEYS, "seed"], sort=False).tail(1)
    return last[last["status"] != "diverged"]


def short_of_budget(rows: pd.DataFrame, res: Results) -> pd.Series:
    """For `finals` rows, whether the run stopped before its task's step budget (manifest
    `steps`; diverged runs are not in `finals`): a wall-clock cap stopped it. False where the
    manifest gives no budget."""
    budget = rows["task"].map(lambda t: res.task_info(str(t), "steps"))
    return rows["step"] < pd.to_numeric(budget, errors="coerce").fillna(-np.inf)


def short_sentence(
    base: str, rows: pd.DataFrame, cut: pd.Series, res: Results, style: Style
) -> str | None:
    """One finding naming each setting and width of `rows` (`along_option` finals of one base
    task) whose runs a cap cut short (`cut`: `short_of_budget` of `rows`), with the median last
    step of those runs against the budget and the cap; None when no run was cut short."""
    parts = []
    for (est, params, width, task), g in rows.groupby(["estimator", "params", "width", "task"]):
        short = g[cut.loc[g.index]]
        if short.empty:
            continue
        cap, steps = res.task_info(str(task), "seconds"), res.task_info(str(task), "steps")
        parts.append(f"{style.label(str(est), str(params))} at width {fmt(float(width))} "
                     f"({len(short)} of {len(g)} seeds, step {int(short['step'].median())} of "
                     f"{steps}{'' if cap is None else f', {fmt(cap)} s cap'})")  # fmt: skip
    if not parts:
        return None
    return (f"On {base}, cut short by the wall-clock cap before the step budget (median last "
            f"step of those seeds; x marks the point): {', '.join(parts)}. Those points are the "
            "accuracy reached within the cap, not after the budget.")  # fmt: skip


def mark_short(ax: Axes, g: pd.DataFrame, short: pd.Series, y: str, colour: str) -> None:
    """An x over each width's mean of `y` in `g` (one setting's finals) where a seed was cut
    short (`short`, indexed like `g`)."""
    hit = g[short.loc[g.index]].groupby("width").size().index
    means = g.groupby("width")[y].mean()
    if len(hit):
        ax.plot(list(hit), [means[w] for w in hit], "x", color=colour, ms=8, mew=2)


def legend_short(ax: Axes, short: pd.Series) -> None:
    """A legend entry for `mark_short`'s x when some run in `short` was cut short."""
    if short.any():
        ax.plot([], [], "x", color="grey", ms=8, mew=2, label="cut short by the cap")


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
        short = short_of_budget(rows, res)
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
            mark_short(acc_ax, g, short, "val_acc", kw["color"])
            mark_short(loss_ax, g, short, "train_loss", kw["color"])
            findings.append(
                f"On {base}, {label}'s final validation accuracy goes from {fmt(acc[0])} at width "
                f"{fmt(x[0])} to {fmt(acc[-1])} at width {fmt(x[-1])}; its final training loss "
                f"from {fmt(loss[0])} to {fmt(loss[-1])}."
            )
        legend_short(acc_ax, short)
        cut = short_sentence(base, rows, short, res, style)
        findings += [cut] if cut is not None else []
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
