"""Figure: time ratio and FLOP ratio to backprop against model size, one panel per family.

Reads `scaling.csv` (the `scaling` measurement: a cost cell per estimator and size). Solid lines
are time ratios with their 95% intervals (bars), dashed lines of the same colour the counted FLOP
ratios; hollow markers are cost cells marked noisy. For each estimator and family the findings
give two sizes, each the smallest measured at which the whole time interval lies below a bound
and the cell is not noisy: where time follows FLOPs (`time_ratio_hi <= FOLLOWS x flop_ratio`) and
where the estimator breaks even with backprop (`time_ratio_hi < 1`); or that neither was reached
up to the largest size measured, with the ratios there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from reports.load import Results
from reports.section import Section, skip, write_table
from reports.style import (
    BACKPROP,
    Style,
    figure_legend,
    fmt,
    log_axis,
    log_if_wide,
    new_figure,
    save,
)
from reports.tables import flag

FOLLOWS = 1.25  # time "follows FLOPs" when the time ratio is within this factor of the FLOP ratio
TITLE = "Figure: time and FLOP ratios against model size"
QUESTION = "At what model size does each estimator's FLOP saving show up in wall-clock time?"
SOURCE = (
    "scaling.csv (`python -m runners.sweep --preset paper-scaling`): per estimator and size, the "
    "cost cell's mean-time ratio to backprop with its 95% interval (solid, bars) and counted "
    "FLOP ratio (dashed); hollow: cell marked noisy; x: the family's size option, log scale"
)
HEADERS = ["family", "estimator", f"time within {FOLLOWS}× FLOPs from", "break-even from",
           "largest size: time × [95% CI]", "FLOPs ×"]  # fmt: skip
Row = Mapping[str, Any]


def first_size(rows: pd.DataFrame, ok: pd.Series) -> float:
    """The smallest size whose row satisfies `ok` and is not noisy (NaN when none)."""
    calm = ok & ~rows["noisy"].map(flag)
    return float(rows.loc[calm, "size"].min()) if calm.any() else math.nan


def thresholds(rows: pd.DataFrame) -> tuple[float, float]:
    """(smallest size where time follows FLOPs, smallest where it breaks even) of one estimator's
    rows in one family."""
    follows = first_size(rows, rows["time_ratio_hi"] <= FOLLOWS * rows["flop_ratio"])
    even = first_size(rows, rows["time_ratio_hi"] < 1.0)
    return follows, even


def _size(size: float) -> str:
    """A model size as written in the task spec (2048, not 2.05e+03)."""
    return f"{size:g}" if size != int(size) else str(int(size))


def _reached(size: float, axis: str) -> str:
    return f"{axis}={_size(size)}" if math.isfinite(size) else "not reached"


def _series(scaling: pd.DataFrame) -> pd.DataFrame:
    """One row per family, estimator setting and size (median over repeated rows)."""
    keys = ["family", "axis", "estimator", "params", "size"]
    groups = scaling.groupby(keys, sort=False)
    out = groups[["time_ratio", "flop_ratio", "memory_ratio"]].median()
    out["time_ratio_lo"] = groups["time_ratio_lo"].min()
    out["time_ratio_hi"] = groups["time_ratio_hi"].max()
    out["noisy"] = groups["noisy"].agg(lambda s: any(flag(v) for v in s))
    return out.reset_index().sort_values("size")


def build(res: Results, style: Style, out: Path) -> list[Section]:
    scaling = res.frame("scaling.csv")
    if scaling is None or scaling.empty:
        return [skip(TITLE, QUESTION, SOURCE,
                     "the results hold no scaling.csv (run `python -m runners.sweep --preset "
                     "paper-scaling`)")]  # fmt: skip
    series = _series(scaling[scaling["estimator"] != BACKPROP])
    families = list(dict.fromkeys(scaling["family"]))
    fig, axes = new_figure(len(families), width=5.2, height=3.8, cols=2)
    findings, table = [], []
    for ax, family in zip(axes, families, strict=True):
        f = series[series["family"] == family]
        axis = str(f["axis"].iloc[0])
        for (est, params), g in f.groupby(["estimator", "params"], sort=False):
            label = style.label(est, params)
            colour = style.colour(label)
            err = np.array([(g["time_ratio"] - g["time_ratio_lo"]).clip(lower=0),
                            (g["time_ratio_hi"] - g["time_ratio"]).clip(lower=0)])  # fmt: skip
            ax.errorbar(g["size"], g["time_ratio"], yerr=err, color=colour, marker="o", ms=4,
                        capsize=2, label=label, mfc="white")  # fmt: skip
            calm = g[~g["noisy"]]
            ax.plot(calm["size"], calm["time_ratio"], "o", color=colour, ms=4)
            ax.plot(g["size"], g["flop_ratio"], "--", color=colour, lw=1)
            follows, even = thresholds(g)
            last = g.iloc[-1]
            table.append([family, label, _reached(follows, axis), _reached(even, axis),
                          f"{axis}={_size(last['size'])}: {fmt(last['time_ratio'])} "
                          f"[{fmt(last['time_ratio_lo'])}, {fmt(last['time_ratio_hi'])}]"
                          + (" (noisy)" if last["noisy"] else ""),
                          fmt(last["flop_ratio"])])  # fmt: skip
            calm_cells = int((~g["noisy"]).sum())
            findings.append(_sentence(family, label, axis, follows, even, last, calm_cells))
        ax.axhline(1.0, color="black", lw=0.8, ls=":")
        log_axis(ax, "x", base=2)
        log_if_wide(ax, [*f["time_ratio_lo"], *f["time_ratio_hi"], *f["flop_ratio"]], ratio=10)
        ax.set(title=family, xlabel=f"model size ({axis})",
               ylabel="ratio to backprop\n(solid: time, dashed: FLOPs)")  # fmt: skip
        ax.grid(alpha=0.3)
    figure_legend(fig, axes, cols=4)
    files = save(fig, out, "scaling")
    text = tabulate(table, HEADERS, tablefmt="pipe", disable_numparse=True)
    files.append(write_table(out, "scaling", TITLE, SOURCE, text))
    return [Section(TITLE, QUESTION, SOURCE, files, findings)]


def _sentence(
    family: str, label: str, axis: str, follows: float, even: float, last: Row, calm: int
) -> str:
    largest = (f"at the largest size measured ({axis}={_size(last['size'])}) its time ratio is "
               f"{fmt(last['time_ratio'])} [{fmt(last['time_ratio_lo'])}, "
               f"{fmt(last['time_ratio_hi'])}] against a FLOP ratio of "
               f"{fmt(last['flop_ratio'])}")  # fmt: skip
    if not calm:
        return (
            f"On {family}, {label}: every cell is marked noisy, so no size is a finding; {largest}."
        )
    parts = []
    if math.isfinite(follows):
        parts.append(f"its time ratio is within {FOLLOWS}× its FLOP ratio from {axis}="
                     f"{_size(follows)}")  # fmt: skip
    else:
        parts.append(f"no steady cell has its time ratio within {FOLLOWS}× its FLOP ratio")
    if math.isfinite(even):
        parts.append(f"it is faster than backprop from {axis}={_size(even)}")
    else:
        parts.append("no steady cell breaks even with backprop")
    return f"On {family}, {label}: {'; '.join(parts)}; {largest}."
