"""Gradient-quality rows of `quality.csv` summarised over seeds, and the bias test's verdict.

Point values are medians over seeds. The 95% intervals of the protocol (`cosine`, `rel_mse`,
`work_mse`) are over the draws of one seed; over several seeds the report gives their envelope
(lowest lower end, highest upper end), which covers every seed's interval, and for the relative
bias the largest of the seeds' standard errors. The seeds' bias tests (Hotelling T² of "the
draws' mean equals the exact batch gradient", one p-value `bias_p` per seed) are combined by
Fisher's method (R. A. Fisher, Statistical Methods for Research Workers, 4th ed. 1932, §21.1):
X = -2 sum_s ln p_s follows chi²(2S) under "bias = 0 at every seed", so one seed's p is its own.
A bias is significant only when that p is below `ALPHA`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import combine_pvalues

from reports.style import COSINE_RANGE, interval

ALPHA = 0.05  # the bias test's level (docs/protocol.md)
STATS = ["cosine", "rel_bias", "rel_variance", "rel_mse", "work_mse", "work_scale"]
INTERVALS = {"cosine": ("cosine_lo", "cosine_hi"), "rel_mse": ("rel_mse_lo", "rel_mse_hi"),
             "work_mse": ("work_mse_lo", "work_mse_hi")}  # fmt: skip


def fisher_p(p: pd.Series) -> float:
    """Fisher's combination of the finite p-values in `p` (NaN when there are none); a p of 0
    is read as the smallest positive double, so the combination is 0 too."""
    finite = p.dropna().astype(float).clip(lower=np.finfo(float).tiny)
    return float(combine_pvalues(finite, method="fisher").pvalue) if len(finite) else math.nan


def significant(p: float) -> bool:
    """Whether a bias test's p-value rejects "bias = 0" at `ALPHA` (NaN: untested, False)."""
    return bool(p < ALPHA)


def cosine_cell(r: Mapping[str, Any]) -> str:
    """A row's cosine with its 95% interval, "0.4 [0.2, 0.6]"."""
    return interval(r["cosine"], r["cosine_lo"], r["cosine_hi"], COSINE_RANGE)


def over_seeds(quality: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by`: the median of each statistic, `<stat>_min/_max` over seeds, the
    interval envelopes (`cosine_lo/hi`, `rel_mse_lo/hi`, `work_mse_lo/hi`), the largest
    `rel_bias_se`, the lowest `work_floor`, the Fisher-combined `bias_p` and the number of
    seeds."""
    groups = quality.groupby(by, sort=False)
    out = groups[STATS].median()
    for stat in STATS:
        out[f"{stat}_min"] = groups[stat].min()
        out[f"{stat}_max"] = groups[stat].max()
    for lo, hi in INTERVALS.values():
        out[lo] = groups[lo].min()
        out[hi] = groups[hi].max()
    out["rel_bias_se"] = groups["rel_bias_se"].max()
    if "work_floor" in quality:  # the lowest no-information level: an interval reaching it is
        out["work_floor"] = groups["work_floor"].min()  # never read as informative
    out["bias_p"] = groups["bias_p"].agg(fisher_p)
    out["seeds"] = groups["seed"].nunique()
    return out.reset_index()


def at_end(quality: pd.DataFrame) -> pd.DataFrame:
    """The rows at each task's last checkpoint (the end of the backprop trajectory)."""
    last = quality.groupby("task")["checkpoint"].transform("max")
    return quality[quality["checkpoint"] == last]
