"""Finding: an estimator's logged alignment against its own break-even alignment.

`cv-predicted` logs, every refit, `alignment` (the cosine of the predicted and the true
control-batch gradient) and `break_even` (the alignment below which the control variate costs
more variance than the compute it saves buys: `estimators.cv_predicted.break_even_alignment`) to
diagnostics.csv. Any estimator logging both names gets the same sentence.

Per seed, the alignment is averaged over the logged steps; over several seeds the sentence gives
the mean of those averages with its 95% Student-t interval over seeds. With one seed the
interval is over the logged steps, which are not independent (it is narrower than it should be,
and the sentence says so). The verdict compares the interval with the break-even value: below,
above, or not distinguishable (the interval contains it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reports.load import KEYS
from reports.style import COSINE_RANGE, Style, half_width, interval

NAMES = ("alignment", "break_even")


def alignment_rows(diagnostics: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per setting of `task` that logs both names: `mean`, `lo`, `hi` (the clipped 95%
    interval), `break_even` (median of the logged values), `seeds` and `steps` (logged)."""
    rows = diagnostics[(diagnostics["task"] == task) & diagnostics["name"].isin(NAMES)]
    out = []
    for (est, params), g in rows.groupby(KEYS[1:], sort=False):
        align = g[g["name"] == "alignment"]
        even = g[g["name"] == "break_even"]["value"].astype(float)
        if align.empty or even.empty:
            continue
        per_seed = align.groupby("seed")["value"].mean().to_numpy(float)
        values = per_seed if len(per_seed) > 1 else align["value"].to_numpy(float)
        mean, half = float(np.mean(values)), half_width(values)
        lo, hi = (mean - half, mean + half) if math.isfinite(half) else (math.nan, math.nan)
        out.append({"estimator": est, "params": params, "mean": mean, "lo": lo, "hi": hi,
                    "break_even": float(even.median()), "seeds": len(per_seed),
                    "steps": len(align)})  # fmt: skip
    return pd.DataFrame(out)


def verdict(mean: float, lo: float, hi: float, even: float) -> str:
    """Where an alignment's 95% interval lies against the break-even alignment `even`."""
    if math.isnan(lo) or math.isnan(hi):
        return "no interval (a single logged value), so no comparison"
    if hi < even:
        return "below its break-even alignment: no gain over backprop is expected from it"
    if lo > even:
        return "above its break-even alignment"
    return "not distinguishable from its break-even alignment (the interval contains it)"


def break_even_findings(diagnostics: pd.DataFrame | None, task: str, style: Style) -> list[str]:
    """One sentence per setting of `task` that logs an alignment and a break-even alignment."""
    if diagnostics is None:
        return []
    out = []
    for r in alignment_rows(diagnostics, task).to_dict("records"):
        lo, hi = r["lo"], r["hi"]
        shown = interval(r["mean"], lo, hi, COSINE_RANGE)
        over = (
            f"mean over {r['seeds']} seeds of each seed's mean over its logged steps, 95% "
            "t-interval over seeds"
            if r["seeds"] > 1
            else f"mean over {r['steps']} logged steps of one seed, 95% t-interval over those "
            "steps, which are not independent, so it is too narrow"
        )
        out.append(
            f"{style.label(r['estimator'], r['params'])}'s alignment (cosine of predicted and "
            f"true control gradient, diagnostics.csv; {over}) is {shown}, "
            f"{verdict(r['mean'], lo, hi, r['break_even'])} ({r['break_even']:.3g})."
        )
    return out
