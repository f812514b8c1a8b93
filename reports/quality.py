"""Gradient-quality rows of `quality.csv` summarised over seeds.

Point values are medians over seeds. The 95% intervals of the protocol are over the draws of
one seed; over several seeds the report gives their envelope (lowest lower end, highest upper
end), which covers every seed's interval.
"""

from __future__ import annotations

import pandas as pd

STATS = ["cosine", "rel_bias", "rel_variance", "rel_mse", "work_mse"]
INTERVALS = {"cosine": ("cosine_lo", "cosine_hi"), "rel_mse": ("rel_mse_lo", "rel_mse_hi")}


def over_seeds(quality: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by`: the median of each statistic, `<stat>_min/_max` over seeds, the
    interval envelopes (`cosine_lo/hi`, `rel_mse_lo/hi`) and the number of seeds."""
    groups = quality.groupby(by, sort=False)
    out = groups[STATS].median()
    for stat in STATS:
        out[f"{stat}_min"] = groups[stat].min()
        out[f"{stat}_max"] = groups[stat].max()
    for lo, hi in INTERVALS.values():
        out[lo] = groups[lo].min()
        out[hi] = groups[hi].max()
    out["seeds"] = groups["seed"].nunique()
    return out.reset_index()


def at_end(quality: pd.DataFrame) -> pd.DataFrame:
    """The rows at each task's last checkpoint (the end of the backprop trajectory)."""
    last = quality.groupby("task")["checkpoint"].transform("max")
    return quality[quality["checkpoint"] == last]
